#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what is missing, starts the
# Docker engine, builds, lints, runs the unit and integration tests (real engine, real
# server, real WebSockets) and the browser tests (headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

TERMCELL_WITH_BROWSER=1 scripts/setup.sh

if [ -f web/package.json ]; then
    (cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
cargo build --workspace -q
# The default sandbox image once, before the tests start servers in parallel.
target/debug/termcell build-image --admin-listen off >/dev/null
docker/build-probe.sh >/dev/null
cargo test --workspace
cargo test --test it -- --ignored engine_restart

if [ -f tests/browser/run.sh ]; then
    tests/browser/run.sh
fi
