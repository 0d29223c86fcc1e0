#!/usr/bin/env bash
# Fuzzes the KPL de-aggregator (sdk-core/fuzz, cargo-fuzz on nightly) for a set time per target.
# Not part of CI: the seed corpus (sdk-core/fuzz/corpus/<target>/) is replayed on stable by
# `cargo test -p tributary-core --test kpl_corpus`.
#
#   scripts/fuzz.sh [SECONDS]    # default 120 s per target
#
# New inputs libFuzzer finds go to sdk-core/fuzz/corpus/<target>/.run/ (not committed); a crash
# leaves its input in sdk-core/fuzz/artifacts/<target>/: add it to the seed corpus with a name
# that says what it is, and fix the decoder.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-120}

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || cargo install cargo-fuzz
fi

cd sdk-core/fuzz
# cargo-fuzz builds with its own flags: keep its artifacts apart from the workspace's.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"
for target in $(cargo +nightly fuzz list); do
    run_corpus="corpus/$target/.run"
    mkdir -p "$run_corpus"
    echo "==> fuzzing $target for $seconds s"
    cargo +nightly fuzz run "$target" "$run_corpus" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -max_len=65536
done
echo "no crash"
