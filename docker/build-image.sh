#!/bin/sh
# Builds the default sandbox image (termcell-sandbox:latest) with `termcell build-image`,
# which gathers the image's files from the host and termcell's in-container programs
# (built here by docker/build-programs.sh; docs/security.md, "The default image").
# Usage: docker/build-image.sh [image-tag]   (BUSYBOX=path picks another busybox)
set -eu

cd "$(dirname "$0")/.."
tag=${1:-termcell-sandbox:latest}
programs=$(docker/build-programs.sh)
set -- build-image --admin-listen off --image "$tag" --sandbox-programs "$programs"
if [ -n "${BUSYBOX:-}" ]; then
    set -- "$@" --busybox "$BUSYBOX"
fi
cargo run -q --bin termcell -- "$@" >/dev/null
echo "$tag"
