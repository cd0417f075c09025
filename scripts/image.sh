#!/usr/bin/env bash
# Builds Lazaret's container images without any registry: a rootfs holding the binary, what it
# runs and every shared library they link, loaded with `docker import`. The Kubernetes manifests
# (deploy/kubernetes) run them.
#
#   scripts/image.sh agent|controller [TAG] [BINARY]
#
# agent: lazaret-agent plus the two programs it runs (nsenter from util-linux, nft from
# nftables); TAG defaults to lazaret/agent:dev. controller: lazaret-controller alone; TAG
# defaults to lazaret/controller:dev. BINARY defaults to target/release/<binary> (`cargo build
# --release`), else target/debug/<binary>. Load an image on other nodes with
# `docker save TAG | ssh node docker load` (or `ctr -n k8s.io image import`).
set -euo pipefail
cd "$(dirname "$0")/.."
component=${1:-}
case "$component" in
  agent) name=lazaret-agent; tools="nsenter nft" ;;
  controller) name=lazaret-controller; tools="" ;;
  *) echo "usage: scripts/image.sh agent|controller [TAG] [BINARY]" >&2; exit 2 ;;
esac
tag=${2:-lazaret/$component:dev}
binary=${3:-}
if [ -z "$binary" ]; then
  for candidate in "target/release/$name" "target/debug/$name"; do
    if [ -x "$candidate" ]; then binary=$candidate; break; fi
  done
fi
[ -n "$binary" ] && [ -x "$binary" ] || { echo "no $name binary: cargo build --release -p $name" >&2; exit 1; }
for tool in $tools; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install util-linux nftables)" >&2; exit 1; }
done

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/usr/local/bin" "$rootfs/usr/sbin" "$rootfs/etc/lazaret" "$rootfs/var/lib" \
  "$rootfs/run" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
# Runtimes report paths under /var/run (Docker's sandbox keys): the DaemonSet mounts the host's
# /run, and /var/run leads there.
ln -s /run "$rootfs/var/run"
install -m 0755 "$binary" "$rootfs/usr/local/bin/$name"
programs="$rootfs/usr/local/bin/$name"
for tool in $tools; do
  install -m 0755 "$(command -v "$tool")" "$rootfs/usr/sbin/$tool"
  programs="$programs $rootfs/usr/sbin/$tool"
done
# Every library they link (ldd's absolute paths), at the same place in the image.
for program in $programs; do
  ldd "$program" | grep -o '/[^ ]*' | while read -r library; do
    mkdir -p "$rootfs$(dirname "$library")"
    cp -L "$library" "$rootfs$library"
  done
done
# Host-name lookups (gossip seeds given by name): glibc loads these at run time, so ldd does not
# list them.
printf 'hosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
for library in /lib/*-linux-gnu/libnss_files.so.2 /lib/*-linux-gnu/libnss_dns.so.2 /lib/*-linux-gnu/libresolv.so.2; do
  if [ -e "$library" ]; then
    mkdir -p "$rootfs$(dirname "$library")"
    cp -L "$library" "$rootfs$library"
  fi
done

tar -C "$rootfs" -c . | docker import \
  -c "ENTRYPOINT [\"/usr/local/bin/$name\"]" \
  -c 'ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c "LABEL org.opencontainers.image.title=$name" \
  - "$tag" >/dev/null
echo "made $tag from $binary"
