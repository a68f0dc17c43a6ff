#!/bin/sh
# Loads the termcell-sandbox AppArmor profile into the kernel (run as root on the
# Docker host). Without AppArmor on the host it explains why and exits 2: the server
# then reports AppArmor as unavailable instead of claiming it.
# Usage: sudo docker/install-apparmor.sh [--check]   (--check: parse only, load nothing)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
profile="$here/apparmor/termcell-sandbox"
name=termcell-sandbox

if ! command -v apparmor_parser >/dev/null 2>&1; then
    echo "apparmor_parser not found: install it (Debian/Ubuntu: apt-get install apparmor)" >&2
    exit 1
fi

if [ "${1:-}" = "--check" ]; then
    # -Q: no kernel load, -K: no cache; this only parses and compiles.
    apparmor_parser -Q -K "$profile"
    echo "$name: profile parses"
    exit 0
fi

enabled=$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null || echo N)
if [ "$enabled" != "Y" ]; then
    cat >&2 <<MSG
AppArmor is not enabled in this kernel (/sys/module/apparmor/parameters/enabled is
"$enabled"), so Docker cannot enforce any AppArmor profile: it would accept
"apparmor=$name" and silently enforce nothing. termcell detects this from
"docker info" and reports AppArmor as unavailable. The other layers (seccomp,
no capabilities, read-only root, noexec tmpfs, no-new-privileges) still apply.
To use AppArmor, boot a kernel with it enabled (e.g. "apparmor=1 security=apparmor"
on the kernel command line) and run this script again.
MSG
    exit 2
fi

if [ "$(id -u)" != 0 ]; then
    echo "loading an AppArmor profile needs root: sudo $0" >&2
    exit 1
fi

# -r: replace the profile if it is loaded; -W: write the compiled cache.
apparmor_parser -r -W "$profile"
install -D -m 0644 "$profile" "/etc/apparmor.d/$name"

if command -v aa-status >/dev/null 2>&1; then
    if aa-status 2>/dev/null | grep -qx "   $name"; then
        echo "$name: loaded (enforce mode); copied to /etc/apparmor.d/ so it loads at boot"
    else
        echo "$name: apparmor_parser succeeded but aa-status does not list it" >&2
        exit 1
    fi
else
    grep -q "^$name " /sys/kernel/security/apparmor/profiles 2>/dev/null \
        && echo "$name: loaded; copied to /etc/apparmor.d/ so it loads at boot"
fi
echo "Check with: docker info --format '{{.SecurityOptions}}'  (must list name=apparmor)"
