#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script): install what is
# missing, check formatting and lints, then every unit and end-to-end test against the real
# Docker engine. Benches are type-checked by clippy but not run here (see benches/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/bootstrap.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
