#!/usr/bin/env bash
# Segment compatibility with Segment's own library: installs the npm packages of tests/segment
# (the real @segment/analytics-node, pinned by its package-lock.json) when missing, builds
# `tributary`, then runs tests/segment/ with node's test runner against `tributary serve`.
# Idempotent: a second run installs nothing and only checks that the binary is up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

suite_started=$(date +%s)

stage "node" ensure_node
stage "npm ci (tests/segment)" ensure_node_modules tests/segment
stage "cargo build tributary" cargo build -p tributary-backend --bin tributary --locked
export TRIBUTARY_BIN="$CARGO_TARGET_DIR/debug/tributary"
stage "node --test tests/segment/" node --test tests/segment/

echo "Segment tests passed in $(($(date +%s) - suite_started)) s"
