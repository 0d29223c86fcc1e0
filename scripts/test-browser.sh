#!/usr/bin/env bash
# The status page in headless Chromium: installs what is missing (Debian's chromium, the npm
# packages of tests/browser), builds `tributary`, then runs tests/browser/ with node's test runner.
# Idempotent: a second run installs nothing and only checks that the binary is up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

suite_started=$(date +%s)

# Debian's chromium, only when it is missing.
ensure_chromium() {
    ensure_debian_packages chromium="$CHROMIUM"
    "$CHROMIUM" --version
}

stage "chromium" ensure_chromium
stage "npm ci (tests/browser)" ensure_node_modules tests/browser
stage "cargo build tributary" cargo build -p tributary-backend --bin tributary --locked
export TRIBUTARY_BIN="$CARGO_TARGET_DIR/debug/tributary"
stage "node --test tests/browser/" node --test tests/browser/

echo "browser tests passed in $(($(date +%s) - suite_started)) s"
