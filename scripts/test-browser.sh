#!/usr/bin/env bash
# The status page in headless Chromium: installs what is missing (Debian's chromium, the npm
# packages of tests/browser), builds `tributary`, then runs tests/browser/ with node's test runner.
# Idempotent: a second run installs nothing and only checks that the binary is up to date.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

suite_started=$(date +%s)
stage() {
    local name=$1
    shift
    local started
    started=$(date +%s)
    echo "==> $name"
    "$@"
    echo "<== $name: $(($(date +%s) - started)) s"
}

# Debian's chromium, only when it is missing. The package lists are refreshed only when apt does
# not know the package yet, or when installing from the lists it has fails (they may be stale).
ensure_chromium() {
    if [[ -x "$CHROMIUM" ]]; then
        echo "$CHROMIUM is installed"
    else
        export DEBIAN_FRONTEND=noninteractive
        local policy
        policy=$(apt-cache policy chromium 2>/dev/null || true)
        if ! grep -q 'Candidate: [0-9]' <<<"$policy"; then
            apt-get update
        fi
        if ! apt-get install -y chromium; then
            apt-get update
            apt-get install -y chromium
        fi
    fi
    "$CHROMIUM" --version
}

# `npm ci` when node_modules is missing or was installed from another package.json/package-lock.json.
ensure_node_modules() {
    local dir=tests/browser stamp=tests/browser/node_modules/.installed-from
    local wanted
    wanted=$(cat "$dir/package.json" "$dir/package-lock.json" | sha256sum | cut -d' ' -f1)
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
        echo "$dir/node_modules is up to date"
        return
    fi
    (cd "$dir" && npm ci --no-audit --no-fund)
    echo "$wanted" >"$stamp"
}

stage "chromium" ensure_chromium
stage "npm ci (tests/browser)" ensure_node_modules
stage "cargo build tributary" cargo build -p tributary-backend --bin tributary --locked
export TRIBUTARY_BIN="$CARGO_TARGET_DIR/debug/tributary"
stage "node --test tests/browser/" node --test tests/browser/

echo "browser tests passed in $(($(date +%s) - suite_started)) s"
