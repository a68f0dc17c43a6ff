#!/usr/bin/env bash
# Fails when the committed page bundle (web/dist, embedded in every termcell binary) is not
# what web/src builds to: rebuilds it from web/src with the locked npm packages into a
# temporary directory and compares. Needs Node.js and npm (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

(cd web && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
npm --prefix web run --silent build -- "$tmp/dist"

if ! diff -rq web/dist "$tmp/dist" >"$tmp/differences"; then
    echo "web/dist is stale: run npm --prefix web run build and commit it" >&2
    sed "s|$tmp/dist|(fresh build)|" "$tmp/differences" >&2
    exit 1
fi
