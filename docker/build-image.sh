#!/bin/sh
# Builds the default sandbox image (termcell-sandbox:latest) from Debian's static busybox.
# Usage: docker/build-image.sh [image-tag]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
tag=${1:-termcell-sandbox:latest}
busybox=${BUSYBOX:-/bin/busybox}

# A dynamically linked busybox would not run in a FROM scratch image.
if [ ! -f "$busybox" ] || ! file -L "$busybox" | grep -q 'statically linked'; then
    echo "static busybox not found: apt-get install busybox-static" >&2
    exit 1
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT INT TERM
cp "$busybox" "$ctx/busybox"
cp "$here/passwd" "$here/group" "$ctx/"
cp "$here/sandbox.Dockerfile" "$ctx/Dockerfile"
chmod 0755 "$ctx/busybox"
chmod 0644 "$ctx/passwd" "$ctx/group"

docker build -q -t "$tag" "$ctx" >/dev/null
echo "$tag"
