#!/usr/bin/env bash
# The web SDK (@tributary/web, sdk-wasm/): installs what is missing (Debian's chromium and
# chromium-driver, wasm-bindgen-cli at the wasm-bindgen crate's exact version, the npm packages),
# then
#   1. runs sdk-wasm's wasm-bindgen-test tests in headless Chromium, the conformance suite
#      (tests/conformance/ through the wasm module's WebQueue, sdk-wasm/tests/conformance.rs)
#      included; `--nocapture` prints its summary and any scenario it skips, with the reason,
#   2. builds the npm package (`npm run build` in sdk-wasm/) and checks its size budget,
#   3. builds the Vite sample (samples/web/) and `tributary`, and runs the end-to-end tests
#      (tests/web/) with playwright-core driving Debian's chromium, among them the conformance
#      scenarios createClient's options can express, through the built package (conformance.test.mjs).
# Idempotent: a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"

# Debian's chromium and chromium-driver, only when missing.
ensure_chromium_and_driver() {
    ensure_debian_packages chromium="$CHROMIUM" chromium-driver="$CHROMEDRIVER"
    "$CHROMIUM" --version
    "$CHROMEDRIVER" --version
}

# wasm-bindgen-cli (wasm-bindgen-test-runner comes with it) at Cargo.lock's wasm-bindgen version.
ensure_wasm_bindgen_cli() {
    if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
        rustup target add wasm32-unknown-unknown
    fi
    local version
    version=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
    if ! wasm-bindgen --version 2>/dev/null | grep -qF "$version"; then
        cargo install wasm-bindgen-cli --version "$version" --force
    fi
    wasm-bindgen --version
}

wasm_bindgen_tests() {
    (cd sdk-wasm && CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
        cargo test -p tributary-web --target wasm32-unknown-unknown --locked -- --nocapture)
}

build_sample() {
    # The sample depends on sdk-wasm/dist (file:), so it is installed afresh after each build.
    (cd samples/web && npm ci --no-audit --no-fund && npm run build)
}

stage "chromium and chromium-driver" ensure_chromium_and_driver
stage "wasm-bindgen-cli" ensure_wasm_bindgen_cli
stage "wasm-bindgen-test in headless Chromium (sdk-wasm), conformance suite included" wasm_bindgen_tests
stage "npm ci (sdk-wasm)" ensure_node_modules sdk-wasm
stage "npm run build (sdk-wasm)" bash -c 'cd sdk-wasm && npm run build'
stage "size budget (sdk-wasm/scripts/size.mjs)" bash -c 'cd sdk-wasm && npm run size'
stage "vite build (samples/web)" build_sample
stage "npm ci (tests/web)" ensure_node_modules tests/web
stage "cargo build tributary" cargo build -p tributary-backend --bin tributary --locked
export TRIBUTARY_BIN="$CARGO_TARGET_DIR/debug/tributary"
stage "node --test tests/web/" node --test --test-concurrency=1 tests/web/
