#!/usr/bin/env bash
# Installs what termcell needs on a fresh Debian machine and makes sure a Docker engine
# answers. Idempotent: does nothing that is already done. Run as root (or with sudo).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v file >/dev/null 2>&1 || need+=(file)
# --network restricted: its firewall table (nft), and the tests' network namespaces (ip).
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need+=(nftables)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need+=(iproute2)
# The tests' listeners in those namespaces.
[ -x /usr/bin/python3 ] || need+=(python3)
# The recording tests check that a session's recording plays (`asciinema cat`).
command -v asciinema >/dev/null 2>&1 || need+=(asciinema)
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

# The default sandbox image is FROM scratch with Debian's dynamically linked busybox, its
# loader and libraries (from libc6) and the NSS module that resolves localhost. Both
# packages are extracted, not installed: `busybox` conflicts with busybox-static at
# /bin/busybox, and installing libnss-myhostname would edit the host's nsswitch.conf.
# A stamp per package keeps the extracted version; a new candidate version replaces it.
libdir=/usr/lib/termcell
candidate() { # the version apt would install
    apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p' | grep -v '^(none)$' || true
}
extract() { # package, file inside the package, name in $libdir, mode
    local pkg=$1 src=$2 dst=$3 mode=$4 version tmp
    version=$(candidate "$pkg")
    if [ -z "$version" ]; then
        apt-get update -qq
        version=$(candidate "$pkg")
    fi
    if [ -z "$version" ]; then
        echo "setup: no Debian package $pkg in the configured apt sources" >&2
        exit 1
    fi
    if [ -f "$libdir/$dst" ] && [ "$(cat "$libdir/.$pkg.version" 2>/dev/null)" = "$version" ]; then
        return 0
    fi
    echo "setup: extracting $src from $pkg $version into $libdir" >&2
    tmp=$(mktemp -d)
    # apt downloads as _apt when that user can write the directory.
    chown _apt "$tmp" 2>/dev/null || true
    (cd "$tmp" && apt-get download -qq "$pkg=$version")
    dpkg-deb -x "$tmp"/*.deb "$tmp/root"
    install -d -m 0755 "$libdir"
    install -m "$mode" "$tmp/root/$src" "$libdir/$dst"
    echo "$version" >"$libdir/.$pkg.version"
    rm -rf "$tmp"
}
extract busybox bin/busybox busybox 0755
extract libnss-myhostname "usr/lib/$(uname -m)-linux-gnu/libnss_myhostname.so.2" \
    libnss_myhostname.so.2 0644

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
    # config/server-image.sh puts Debian's static busybox into termcell's own image.
    file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || tools+=(busybox-static)
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

# gVisor (--runtime runsc), when asked: Debian's runsc, registered with the engine as
# `runsc` (sessions without network: gVisor needs --network=none there) and `runsc-net`
# (sessions on a network), both with --oci-seccomp so that termcell's allowlist applies
# inside the sandbox too. Other keys of daemon.json are kept; a running engine reloads.
if [ "${TERMCELL_WITH_GVISOR:-0}" = 1 ]; then
    if [ ! -x /usr/bin/runsc ]; then
        echo "setup: installing runsc (gVisor)" >&2
        apt-get update -qq
        apt-get install -y -qq runsc >/dev/null
    fi
    changed=$(python3 - <<'PY'
import json, os
path = "/etc/docker/daemon.json"
config = {}
if os.path.exists(path):
    with open(path) as f:
        text = f.read().strip()
    config = json.loads(text) if text else {}
want = {
    "runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none", "--oci-seccomp"]},
    "runsc-net": {"path": "/usr/bin/runsc", "runtimeArgs": ["--oci-seccomp"]},
}
runtimes = config.setdefault("runtimes", {})
if all(runtimes.get(k) == v for k, v in want.items()):
    print(0)
else:
    runtimes.update(want)
    os.makedirs("/etc/docker", exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(config, f, indent=2)
    os.replace(path + ".tmp", path)
    print(1)
PY
    )
    if [ "$changed" = 1 ] && pid=$(pidof dockerd); then
        echo "setup: registered gVisor's runtimes; reloading dockerd" >&2
        kill -HUP $pid
        for _ in $(seq 1 30); do
            docker info 2>/dev/null | grep -q 'runsc-net' && break
            sleep 1
        done
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
