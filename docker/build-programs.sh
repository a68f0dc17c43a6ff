#!/bin/sh
# Builds the programs that run inside sandboxes (every package under sandbox/: the probe of
# `termcell verify`, the restricted shell termcell-rsh, ...) as static binaries for a
# FROM scratch image, and prints the directory that holds them (termcell finds them there
# by itself, or through --sandbox-programs).
# Usage: docker/build-programs.sh   (from anywhere inside the workspace)
set -eu

cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
set --
for manifest in sandbox/*/Cargo.toml; do
    set -- "$@" -p "$(sed -n 's/^name = "\(.*\)"$/\1/p' "$manifest" | head -n 1)"
done
# crt-static links glibc statically; symbols are stripped (the images carry no debug data);
# with --target, build scripts and proc macros stay ordinary host programs.
RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols" cargo build --release -q "$@" \
    --target "$host" --target-dir target/sandbox >&2
dir="target/sandbox/$host/release"
for bin in "$dir"/termcell-*; do
    [ -f "$bin" ] && [ -x "$bin" ] || continue
    if ! file "$bin" | grep -q -E 'statically linked|static-pie linked'; then
        echo "build-programs: $bin is not statically linked" >&2
        exit 1
    fi
done
echo "$(pwd)/$dir"
