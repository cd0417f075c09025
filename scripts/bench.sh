#!/usr/bin/env bash
# Every benchmark in one run, and one report: criterion's micro-benches, then the scenario harness
# against the real Docker engine and real agent processes, then BENCHMARKS.md and
# BENCHMARKS.json (metric, goal, p50, p99, floor, ratio, met; machine and date).
#
#   ./scripts/bench.sh                    # everything (about 20 minutes on 2 cores)
#   ./scripts/bench.sh --only enforce,burst   # arguments go to lazaret-scenarios
#
# Needs the Docker engine (the scenarios label their containers and remove them) and root (the
# network cut enters containers' namespaces). Not part of the test suite: timing goals live here.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
cargo build --release --locked -p lazaret-agent -p lazaretctl -p lazaret-controller -p lazaret-benches --bins
# Criterion: shorter windows than its defaults (the medians are stable at these sizes).
cargo bench --locked -p lazaret-benches --benches -- --warm-up-time 1 --measurement-time 3 --noplot
mkdir -p bench-results
./target/release/lazaret-scenarios --out bench-results "$@"
./target/release/lazaret-report --criterion target/criterion \
  --scenarios bench-results/scenarios.json --out BENCHMARKS.md --json BENCHMARKS.json
