#!/usr/bin/env bash
# Runs termcell on a fresh Debian machine with the built-in sandbox image and defaults:
# installs what is missing, starts the Docker engine, builds the server (the terminal page
# is committed in web/dist and embedded at build time).
# Extra arguments go to termcell (see `termcell --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release -q
exec target/release/termcell "$@"
