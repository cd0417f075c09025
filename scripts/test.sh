#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script): install what is
# missing, check formatting and lints, then every unit and end-to-end test against the real
# Docker engine, with the previous release's agent built first for the mixed-version test. Benches
# are type-checked by clippy but not run here (see benches/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/bootstrap.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# The previous release's agent, for the mixed-version fleet test (tests/tests/e2e/upgrade.rs).
./scripts/previous-release.sh >/dev/null

log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# cargo prints one "test result" line per test binary; the last may be an empty doc-test
# run, so close with the totals.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"

# A short fuzzing pass over every parser an outsider reaches (fuzz/, scripts/fuzz.sh): it replays
# the committed seeds, the inputs of every crash fixed so far among them, and fails on a crash.
./scripts/fuzz.sh --smoke
