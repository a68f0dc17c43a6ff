#!/usr/bin/env bash
# Builds the image termcell-server:latest (or $2) FROM scratch from a termcell binary
# (default target/release/termcell), its shared libraries, termcell's static in-container
# programs beside it (from $TERMCELL_SANDBOX_PROGRAMS, default: docker/build-programs.sh
# builds them), Debian's static busybox (for the default sandbox image) and a termcell user;
# no registry is involved. Run as root.
#   config/server-image.sh [BINARY] [TAG]
# config/compose.yml runs it.
set -euo pipefail
bin=${1:-target/release/termcell}
tag=${2:-termcell-server:latest}
busybox=${TERMCELL_BUSYBOX:-/bin/busybox}
programs=${TERMCELL_SANDBOX_PROGRAMS:-$("$(dirname "$0")/../docker/build-programs.sh")}
[ -x "$bin" ] || { echo "server-image: no binary at $bin (cargo build --release)" >&2; exit 1; }
file -L "$busybox" | grep -q 'statically linked' \
    || { echo "server-image: $busybox is not a static busybox (apt-get install busybox-static)" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/rootfs"
install -D -m 0755 "$bin" "$root/usr/local/bin/termcell"
install -D -m 0755 "$busybox" "$root/bin/busybox"
# The programs the default sandbox image holds, and the probe of `termcell verify`:
# termcell finds them beside its binary.
for program in termcell-rsh termcell-entry termcell-probe; do
    [ -x "$programs/$program" ] \
        || { echo "server-image: no $program in $programs (docker/build-programs.sh)" >&2; exit 1; }
    install -D -m 0755 "$programs/$program" "$root/usr/local/bin/$program"
done
# The binary's shared libraries (glibc, libgcc) and the dynamic loader, at their paths.
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    install -D -m 0755 "$lib" "$root$lib"
done
mkdir -p "$root/etc" "$root/tmp" "$stage/logdir"
chmod 1777 "$root/tmp"
printf 'root:x:0:0::/:/bin/false\ntermcell:x:10001:10001::/:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\ntermcell:x:10001:\n' >"$root/etc/group"
touch "$stage/logdir/.keep"
cat >"$stage/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
# A new named volume at /var/log/termcell takes this owner.
COPY --chown=10001:10001 logdir/ /var/log/termcell/
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/termcell"]
CMD ["serve"]
DOCKERFILE
docker build -q -t "$tag" "$stage" >/dev/null
echo "$tag"
