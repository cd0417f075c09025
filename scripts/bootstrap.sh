#!/usr/bin/env bash
# Installs and starts what Lazaret's build, tests and local run need on a fresh Debian machine:
# protoc (for the gRPC code), busybox-static (test images are built from it, no registry),
# nftables and iproute2 (enforcement, network namespaces), e2fsprogs (the store fault test's
# ext4 image), and a running Docker engine
# (Debian's docker.io, started here when `docker info` fails). Idempotent; needs root.
set -euo pipefail

log() { printf 'bootstrap: %s\n' "$*" >&2; }

missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
docker_up() { timeout 20 docker info >/dev/null 2>&1; }
if ! docker_up && ! command -v dockerd >/dev/null 2>&1; then
  missing+=(docker.io)
fi

if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! docker_up; then
  log "starting dockerd (log: /var/log/lazaret-dockerd.log)"
  nohup dockerd >/var/log/lazaret-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker_up && break
    sleep 1
  done
  if ! docker_up; then
    log "dockerd did not come up in 60 s; its log follows"
    tail -n 50 /var/log/lazaret-dockerd.log >&2 || true
    exit 1
  fi
fi
log "ready: $(protoc --version), docker $(docker version --format '{{.Server.Version}}')"
