#!/usr/bin/env bash
# The fault, bad-input and security tests of docs/RELIABILITY.md, with their counts: runs each
# test binary with its output shown and prints every report line (`fault:`, `hostile:`,
# `secrets:`, `conformance`). Run from scripts/test.sh; run it alone to refresh the figures in
# docs/RELIABILITY.md.
#
#   scripts/reliability.sh            # TRIBUTARY_FAULT_SEED=N replays crash_recovery's kill points
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary-target}"

output=$(mktemp)
trap 'rm -f "$output"' EXIT
run() {
    echo "--> cargo test $*"
    if ! cargo test --locked "$@" -- --nocapture >"$output" 2>&1; then
        cat "$output"
        echo "FAILED: cargo test $*" >&2
        exit 1
    fi
    grep -E '^(fault|hostile|secrets|conformance)' "$output" || true
    grep -E '^test result' "$output" | sed 's/^/    /'
}

run -p tributary-backend --test crash_recovery
run -p tributary-backend --test faults
run -p tributary-backend --test hostile_clients
run -p tributary-backend --test secrets_never_logged
run -p tributary-backend --test security
run -p tributary-backend --test fuzz_corpus
run -p tributary-core --test kpl_corpus
run -p tributary-core --test conformance
run -p tributary-server --test conformance
echo "reliability: every fault, bad-input and security test passed"
