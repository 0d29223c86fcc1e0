#!/usr/bin/env bash
# The fault, bad-input and security tests of docs/RELIABILITY.md and the conformance scenarios,
# with their counts: runs those test binaries with their output shown and prints every report
# line (`fault:`, `hostile:`, `security:`, `secrets:`, `conformance`). Run from scripts/test.sh
# (same features as its `cargo test` stage, so nothing is rebuilt); run it alone to refresh the
# figures in docs/RELIABILITY.md.
#
#   scripts/reliability.sh     # TRIBUTARY_FAULT_SEED=N replays crash_recovery's kill points
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary-target}"

tests=(crash_recovery faults hostile_clients security secrets_never_logged fuzz_corpus kpl_corpus conformance)
args=()
for test in "${tests[@]}"; do
    args+=(--test "$test")
done
output=$(mktemp)
trap 'rm -f "$output"' EXIT
if ! cargo test --locked --workspace --features tributary-server/kinesis --features tributary-backend/aws "${args[@]}" \
    -- --nocapture >"$output" 2>&1; then
    cat "$output"
    echo "FAILED: a reliability test" >&2
    exit 1
fi
grep -E '^(fault|hostile|security|secrets|conformance)' "$output"
echo "test binaries: $(grep -c '^test result: ok' "$output") passed ($(grep -E '^test result' "$output" | awk '{s += $4} END {print s}') tests)"
echo "reliability: every fault, bad-input and security test and every conformance scenario passed"
