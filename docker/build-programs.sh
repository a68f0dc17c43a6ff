#!/bin/sh
# Builds termcell-probe as a static binary and prints its path.
# Usage: docker/build-probe.sh   (from anywhere inside the workspace)
set -eu

cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
# crt-static links glibc statically, so the probe runs in a FROM scratch image.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -q -p termcell-probe \
    --target "$host" --target-dir target/probe >&2
bin="target/probe/$host/release/termcell-probe"
if ! file "$bin" | grep -q -E 'statically linked|static-pie linked'; then
    echo "build-probe: $bin is not statically linked" >&2
    exit 1
fi
echo "$(pwd)/$bin"
