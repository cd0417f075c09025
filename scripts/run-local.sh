#!/usr/bin/env bash
# Runs Lazaret locally: the node agent against this machine's Docker engine, with metrics on
# http://127.0.0.1:9464/metrics. Stop it with Ctrl-C. (A local fleet of several agents and a
# controller arrives with issues 6/11 and 7/11.) Extra arguments go to `lazaret-agent run`.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/bootstrap.sh
cargo build --locked -p lazaret-agent
exec ./target/debug/lazaret-agent --config deploy/config/agent.toml run "$@"
