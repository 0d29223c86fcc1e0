#!/usr/bin/env bash
# Fuzzes every cargo-fuzz target (nightly) for a set time each: the KPL de-aggregator
# (sdk-core/fuzz: deaggregate), the ingest's body parsers and per-event checks (backend/fuzz:
# batch) and the routing rules parser (backend/fuzz: rules). Not part of CI: the seed corpora
# (<crate>/fuzz/corpus/<target>/) are replayed on stable by `cargo test -p tributary-core --test
# kpl_corpus` and `cargo test -p tributary-backend --test fuzz_corpus`.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   # default 120 s per target; 600 for the full run
#
# New inputs libFuzzer finds go to <crate>/fuzz/corpus/<target>/.run/ (not committed); a crash
# leaves its input in <crate>/fuzz/artifacts/<target>/: add it to the seed corpus with a name
# that says what it is, and fix the code. To keep what a run found (in <crate>/fuzz):
#   cargo +nightly fuzz cmin TARGET corpus/TARGET/.run && mv -n corpus/TARGET/.run/* corpus/TARGET/
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-120}
shift || true
wanted=("$@")

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || cargo install cargo-fuzz
fi

root=$PWD
for crate in sdk-core/fuzz backend/fuzz; do
    cd "$root/$crate"
    # cargo-fuzz builds with its own flags: keep its artifacts apart from the workspace's.
    export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"
    for target in $(cargo +nightly fuzz list); do
        if ((${#wanted[@]})) && [[ ! " ${wanted[*]} " == *" $target "* ]]; then
            continue
        fi
        run_corpus="corpus/$target/.run"
        mkdir -p "$run_corpus"
        echo "==> fuzzing $crate $target for $seconds s"
        cargo +nightly fuzz run "$target" "$run_corpus" "corpus/$target" -- \
            -max_total_time="$seconds" -timeout=10 -max_len=65536
    done
done
echo "no crash"
