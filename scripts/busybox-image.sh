#!/usr/bin/env bash
# Makes a small local image, lazaret-demo/busybox, from Debian's busybox-static (no registry
# needed), for trying Lazaret on a machine that has no images: `docker run -d lazaret-demo/busybox sleep 600`.
set -euo pipefail
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/bin"
cp /bin/busybox "$rootfs/bin/"
for applet in $("$rootfs/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
done
tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/sh"]' - lazaret-demo/busybox:latest >/dev/null
echo "made lazaret-demo/busybox:latest"
