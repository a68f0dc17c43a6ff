#!/usr/bin/env bash
# Runs the real-browser tests of the built-in page: installs what is missing (Chromium from
# Debian, the npm packages), builds the page and the server, then runs `node --test`.
# TERMCELL_BIN: a server binary to test instead of building target/debug/termcell.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if [ ! -x /usr/bin/chromium ]; then
  echo "run.sh: installing chromium" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi

# npm ci only when the installed tree is missing or older than the lock file.
install_npm() {
  local dir="$1"
  if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund)
  fi
}
install_npm "$root/web"
install_npm "$here"

(cd "$root/web" && npm run build --silent)

if [ -z "${TERMCELL_BIN:-}" ]; then
  # Built after the page so that the page is embedded.
  (cd "$root" && cargo build --quiet --bin termcell)
  TERMCELL_BIN="$root/target/debug/termcell"
fi
export TERMCELL_BIN

cd "$here"
exec node --test --test-timeout=60000
