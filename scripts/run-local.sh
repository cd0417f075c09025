#!/usr/bin/env bash
# Runs Lazaret locally: `lazaretctl dev up`, a dev PKI and an agent against this machine's
# Docker engine (its gRPC API on 127.0.0.1:7443, metrics on 127.0.0.1:9464). Stop it with Ctrl-C.
# Arguments go to `lazaretctl dev up`, e.g. `--agents 2` or `--policy-dir deploy/policies`.
# (The controller and peer-to-peer sync join the fleet with issues 6/11 and 7/11.)
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/bootstrap.sh
cargo build --locked -p lazaret-agent -p lazaretctl
echo "lazaretctl is ./target/debug/lazaretctl (add $(pwd)/target/debug to PATH)"
exec ./target/debug/lazaretctl dev up --dir .lazaret/dev "$@"
