#!/usr/bin/env bash
# The load runs of docs/BENCHMARKS.md "Issue 10: load", by hand, never in CI (they need a quiet
# 2-core machine and ~5 minutes). Each is one `cargo bench --bench ingest_load` run of the release
# `tributary serve` (backend/benches/ingest_load.rs documents every figure); the bench builds the
# release binary first. Output goes to the terminal and to $OUT (default target/load-<UTC time>).
#
#   scripts/load.sh            # all of the below
#   scripts/load.sh sweep      # batch 100 at 16/20/24/32 connections (closed loop)
#   scripts/load.sh default    # batches 1, 10, 100 at their default connections
#   scripts/load.sh ingest     # the same without destinations: ingest + durable log only
#   scripts/load.sh overload   # batch 100 at 256–2048 connections, with the default bound and
#                              # without it: VmHWM and 503s (shed)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary-target}"
what="${1:-all}"
case "$what" in
    sweep | default | ingest | overload | all) ;;
    *)
        echo "usage: scripts/load.sh [sweep|default|ingest|overload|all]" >&2
        exit 2
        ;;
esac
out="${OUT:-target/load-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"

bench() {
    local name=$1
    shift
    echo "== $name: ingest_load $*"
    cargo bench --locked -p tributary-backend --bench ingest_load -- "$@" 2>&1 | tee "$out/$name.txt"
}

echo "machine: $(nproc) cores; $(uptime)"
case "$what" in
    sweep | all) bench sweep --batch 100 --sweep 16,20,24,32 ;;&
    default | all) bench default ;;&
    ingest | all) bench ingest-only --pipeline ingest-only --batch 100 --sweep 20,24,32 ;;&
    overload | all)
        bench overload --batch 100 --sweep 256,512,1024,2048
        bench overload-unbounded --batch 100 --sweep 512,1024,2048 --max-pending-bytes 4294967295
        ;;
esac
echo "outputs in $out"
