#!/usr/bin/env bash
# Installs what termcell needs on a fresh Debian machine and makes sure a Docker engine
# answers. Idempotent: does nothing that is already done. Run as root (or with sudo).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v file >/dev/null 2>&1 || need+=(file)
# The default sandbox image is FROM scratch with Debian's static busybox.
if ! { [ -f /bin/busybox ] && file -L /bin/busybox | grep -q 'statically linked'; }; then
    need+=(busybox-static)
fi
if [ "${TERMCELL_WITH_BROWSER:-0}" = 1 ] && [ ! -x /usr/bin/chromium ]; then
    need+=(chromium)
fi
# Node.js only for the tests: the page bundle is committed, the tests rebuild it to check it.
if [ "${TERMCELL_WITH_BROWSER:-0}" = 1 ] && ! command -v npm >/dev/null 2>&1; then
    need+=(nodejs npm)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The tools that check the deployment files (tests/it/deploy.rs): Caddy runs config/Caddyfile,
# promtool checks config/alerts.yml, systemd-analyze config/termcell.service, docker-compose
# runs config/compose.yml. Only their binaries are used: their services are never started
# here.
if [ "${TERMCELL_WITH_DEPLOY:-0}" = 1 ]; then
    tools=()
    command -v caddy >/dev/null 2>&1 || tools+=(caddy)
    command -v promtool >/dev/null 2>&1 || tools+=(prometheus)
    command -v systemd-analyze >/dev/null 2>&1 || tools+=(systemd)
    command -v docker-compose >/dev/null 2>&1 || tools+=(docker-compose)
    if [ ${#tools[@]} -gt 0 ]; then
        echo "setup: installing ${tools[*]}" >&2
        policy=/usr/sbin/policy-rc.d
        own_policy=0
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && own_policy=1
        fi
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${tools[@]}" >/dev/null
        [ "$own_policy" = 0 ] || rm -f "$policy"
    fi
fi

if ! docker info >/dev/null 2>&1; then
    echo "setup: starting dockerd" >&2
    nohup dockerd >/var/log/termcell-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    if ! docker info >/dev/null 2>&1; then
        echo "setup: dockerd did not come up; see /var/log/termcell-dockerd.log" >&2
        tail -20 /var/log/termcell-dockerd.log >&2 || true
        exit 1
    fi
fi
