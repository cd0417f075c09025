#!/usr/bin/env bash
# Runs Lazaret's cargo-fuzz targets (fuzz/fuzz_targets/*.rs), one after the other, one fuzzing
# process at a time, and prints one summary line per target:
#
#   fuzz: <target> <executions> execs, <crashes> crashes
#
# Usage: scripts/fuzz.sh [--smoke] [--seconds N] [--runs N] [TARGET...]
#   --smoke       a short pass for CI: 15 s per target (the build comes first, once).
#   --seconds N   fuzz each target for N seconds (default 300).
#   --runs N      also stop a target after N executions (libFuzzer -runs), e.g. 10000000.
#   TARGET...     only these targets (default: all of them).
# Exits non-zero if any target crashed (a panic, a failed assertion, a timeout or running out of
# memory); the crashing input is in fuzz/artifacts/<target>/ and the log in
# fuzz/target/fuzz-logs/<target>.log. Reproduce with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none --debug-assertions <target> <input>
# and minimise with `cargo fuzz tmin` (same flags).
#
# Works from a clean clone: installs cargo-fuzz if it is missing (`cargo install cargo-fuzz
# --locked`, the pinned version, from crates.io). Only stable Rust is available on these machines, so cargo-fuzz's
# nightly-only rustc flags (-Z…) are let through with RUSTC_BOOTSTRAP=1.
#
# Build: cargo-fuzz's default optimised build (release, one codegen unit), with debug
# assertions and overflow checks on (--debug-assertions), in fuzz/target (the fuzz crate is not
# in the main workspace and has its own Cargo.lock). Sanitizer: none. The fuzzed code is safe
# Rust (lazaret-core is #![forbid(unsafe_code)]), so AddressSanitizer would mostly slow every
# execution down without finding more; panics, assertion failures, overflow checks, timeouts and
# memory blow-ups are what these targets catch.
#
# Each target starts from its committed seeds (fuzz/seeds/<target>/: inputs taken from the
# repo's docs, deploy/ packs and unit tests) and keeps what it learns in fuzz/corpus/<target>/
# (not committed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ALL_TARGETS=(policy_yaml stix_import falco_json bundle_verify gossip_value selector)
SECONDS_PER_TARGET=300
RUNS=""
TARGETS=()

usage() {
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
}

while (($#)); do
    case "$1" in
        --smoke) SECONDS_PER_TARGET=15 ;;
        --seconds)
            [[ $# -ge 2 && "$2" =~ ^[0-9]+$ && "$2" -gt 0 ]] || { echo "fuzz: --seconds needs a positive number" >&2; exit 2; }
            SECONDS_PER_TARGET="$2"
            shift
            ;;
        --runs)
            [[ $# -ge 2 && "$2" =~ ^[0-9]+$ && "$2" -gt 0 ]] || { echo "fuzz: --runs needs a positive number" >&2; exit 2; }
            RUNS="$2"
            shift
            ;;
        -h | --help) usage; exit 0 ;;
        -*) echo "fuzz: unknown option $1" >&2; usage >&2; exit 2 ;;
        *)
            if [[ " ${ALL_TARGETS[*]} " != *" $1 "* ]]; then
                echo "fuzz: unknown target $1 (targets: ${ALL_TARGETS[*]})" >&2
                exit 2
            fi
            TARGETS+=("$1")
            ;;
    esac
    shift
done
if ((${#TARGETS[@]} == 0)); then
    TARGETS=("${ALL_TARGETS[@]}")
fi

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

export RUSTC_BOOTSTRAP=1
FLAGS=(--sanitizer none --debug-assertions)
LOGS="$ROOT/fuzz/target/fuzz-logs"

started=$SECONDS
echo "fuzz: building ${#TARGETS[@]} target(s)"
for target in "${TARGETS[@]}"; do
    cargo fuzz build "${FLAGS[@]}" "$target"
done
echo "fuzz: built in $((SECONDS - started)) s"
mkdir -p "$LOGS"

LIBFUZZER=(-max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 -timeout=60 -rss_limit_mb=2048)
if [[ -n "$RUNS" ]]; then
    LIBFUZZER+=(-runs="$RUNS")
fi

failed=0
summary=()
for target in "${TARGETS[@]}"; do
    corpus="fuzz/corpus/$target"
    seeds="fuzz/seeds/$target"
    log="$LOGS/$target.log"
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    inputs=("$corpus")
    if [[ -d "$seeds" ]]; then
        inputs+=("$seeds")
    fi
    echo "fuzz: $target for ${SECONDS_PER_TARGET} s${RUNS:+ or $RUNS runs} (log: ${log#"$ROOT"/})"
    status=0
    cargo fuzz run "${FLAGS[@]}" "$target" "${inputs[@]}" -- "${LIBFUZZER[@]}" >"$log" 2>&1 || status=$?
    executions="$(awk '/^stat::number_of_executed_units:/ {value = $2} END {print value + 0}' "$log")"
    speed="$(awk '/^stat::average_exec_per_sec:/ {value = $2} END {print value + 0}' "$log")"
    crashes="$(grep -c -E '^(artifact_prefix=.*; )?Test unit written to' "$log" || true)"
    if ((status != 0)) && ((crashes == 0)); then
        # Not a crash libFuzzer saved (e.g. the build or cargo-fuzz itself failed): still a failure.
        crashes=1
    fi
    echo "fuzz: $target done: $executions execs, $speed exec/s, exit $status"
    if ((crashes > 0)); then
        failed=1
        echo "fuzz: $target FAILED; the end of its log:"
        tail -n 60 "$log"
    fi
    summary+=("fuzz: $target $executions execs, $crashes crashes")
done

echo "fuzz: total $((SECONDS - started)) s"
printf '%s\n' "${summary[@]}"
exit "$failed"
