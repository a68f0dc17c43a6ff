#!/usr/bin/env bash
# Runs termcell on a fresh Debian machine with the built-in sandbox image and defaults:
# installs what is missing, starts the Docker engine, builds the server (the terminal page
# is committed in web/dist and embedded at build time) and the in-container programs.
# Extra arguments go to termcell (see `termcell --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release -q
# The static in-container programs the default sandbox image holds (termcell finds them).
docker/build-programs.sh >/dev/null
exec target/release/termcell "$@"
