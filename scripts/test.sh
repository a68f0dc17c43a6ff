#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what is missing, starts the
# Docker engine, checks the committed page bundle, builds, lints, runs the unit and
# integration tests (real engine, real server, real WebSockets) and the browser tests
# (headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

TERMCELL_WITH_BROWSER=1 TERMCELL_WITH_DEPLOY=1 TERMCELL_WITH_GVISOR=1 scripts/setup.sh

# The embedded page is committed; fail early if it does not match web/src.
scripts/check-web-bundle.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
cargo build --workspace -q
# The static in-container programs (the restricted shell, the probe), then the default
# sandbox image that holds them, once, before the tests start servers in parallel.
docker/build-programs.sh >/dev/null
target/debug/termcell build-image --admin-listen off >/dev/null
cargo test --workspace
# The engine-loss tests stop or kill dockerd: one at a time, after everything else.
cargo test --test it -- --ignored --test-threads 1 engine_

if [ -f tests/browser/run.sh ]; then
    tests/browser/run.sh
fi
