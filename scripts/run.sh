#!/usr/bin/env bash
# Runs termcell on a fresh Debian machine with the built-in sandbox image and defaults:
# installs what is missing, starts the Docker engine, builds the page and the server.
# Extra arguments go to termcell (see `termcell --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
cargo build --release -q
exec target/release/termcell "$@"
