#!/usr/bin/env bash
# Segment compatibility with Segment's own library: installs the npm packages of tests/segment
# (the real @segment/analytics-node, pinned by its package-lock.json) when missing, builds
# `tributary`, then runs tests/segment/ with node's test runner against `tributary serve`.
# Idempotent: a second run installs nothing and only checks that the binary is up to date.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

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

# Node and npm, only when missing (Debian's packages).
ensure_node() {
    if command -v node >/dev/null && command -v npm >/dev/null; then
        echo "node $(node --version), npm $(npm --version)"
        return
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y nodejs npm
    node --version
}

# `npm ci` when node_modules is missing or was installed from another package.json/package-lock.json.
ensure_node_modules() {
    local dir=tests/segment stamp=tests/segment/node_modules/.installed-from
    local wanted
    wanted=$(cat "$dir/package.json" "$dir/package-lock.json" | sha256sum | cut -d' ' -f1)
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
        echo "$dir/node_modules is up to date"
        return
    fi
    (cd "$dir" && npm ci --no-audit --no-fund)
    echo "$wanted" >"$stamp"
}

stage "node" ensure_node
stage "npm ci (tests/segment)" ensure_node_modules
stage "cargo build tributary" cargo build -p tributary-backend --bin tributary --locked
export TRIBUTARY_BIN="$CARGO_TARGET_DIR/debug/tributary"
stage "node --test tests/segment/" node --test tests/segment/

echo "Segment tests passed in $(($(date +%s) - suite_started)) s"
