#!/usr/bin/env bash
# Builds the previous release's `lazaret-agent` (the commit named in tests/previous-release) into
# target/previous/, for the mixed-version (N-1) fleet test (tests/tests/e2e/upgrade.rs). The
# source comes from this repository's own history (`git archive`), so it needs a clone with that
# commit (not a shallow one). Idempotent: a finished build is reused. Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."

rev=$(grep -v '^#' tests/previous-release | head -n 1 | tr -d '[:space:]')
dir=target/previous
if ! git cat-file -e "${rev}^{commit}" 2>/dev/null; then
  echo "previous-release: commit $rev is not in this clone (a shallow clone?); fetch the history" >&2
  exit 1
fi
if [ "$(cat "$dir/rev" 2>/dev/null)" != "$rev" ]; then
  rm -rf "$dir/src"
  mkdir -p "$dir/src"
  git archive "$rev" | tar -x -C "$dir/src"
  echo "$rev" >"$dir/rev"
fi
CARGO_TARGET_DIR="$PWD/$dir/target" cargo build --locked --quiet \
  --manifest-path "$dir/src/Cargo.toml" -p lazaret-agent --bin lazaret-agent >&2
echo "$PWD/$dir/target/debug/lazaret-agent"
