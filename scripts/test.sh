#!/usr/bin/env bash
# The whole test suite: formatting, lints, every crate's tests, the wasm32 build of sdk-core,
# the docs, README's first command (scripts/demo.sh --check), the status page in headless
# Chromium (scripts/test-browser.sh), Segment's analytics-node against `tributary serve`
# (scripts/test-segment.sh), the web SDK (scripts/test-web.sh), the mobile SDK's bindings
# (scripts/check-swift.sh, scripts/test-mobile.sh) and AWS mode: the SAM template (cfn-lint and
# its requirements test) and the Lambda binaries under cargo lambda watch
# (scripts/test-lambda-watch.sh), and the reliability report (scripts/reliability.sh). README.md
# gives this command; .ci/run runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

# One cargo target directory outside the clone, reused across clones and CI runs.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# No incremental compilation: a clean clone gains nothing from it, and its per-path caches grew
# the shared target directory by gigabytes per clone (a full disk broke a link once).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

suite_started=$(date +%s)

source scripts/lib/toolchain.sh
stage "toolchain" ensure_rust_toolchain

stage "cargo fmt --check" cargo fmt --all -- --check
# AWS mode's SAM template: cfn-lint (pinned to 1.53.3, which still applies the SAM transform)
# and the test that the template has what DESIGN.md and issue 5 require. The tools live in a
# virtual environment of their own, installed when missing (scripts/lib/aws-tools.sh).
source scripts/lib/aws-tools.sh
stage "cfn-lint and cargo-lambda (scripts/lib/aws-tools.sh)" ensure_aws_tools
stage "cfn-lint backend/template.yaml" "$AWS_TOOLS_BIN/cfn-lint" backend/template.yaml
stage "SAM template requirements (backend/tests/template)" \
    "$AWS_TOOLS_BIN/python" -m unittest discover -s backend/tests/template -v
# sdk-server's Kinesis mode is behind its `kinesis` feature (off by default): lint, test and
# document it too.
# AWS mode (the Lambda handlers and binaries) is behind the backend's `aws` feature.
kinesis=(--features tributary-server/kinesis --features tributary-backend/aws)
stage "cargo clippy" cargo clippy --workspace --all-targets "${kinesis[@]}" --locked -- -D warnings
# Kinesis mode's tests need moto (a local AWS emulator) on 127.0.0.1 and Python's
# aws-kinesis-agg; the script installs them when missing and exports TRIBUTARY_TEST_MOTO_URL.
start_moto() {
    local exports
    exports=$(bash scripts/start-moto.sh)
    eval "$exports"
}
stage "moto for the Kinesis tests (scripts/start-moto.sh)" start_moto
# The PostgreSQL connector's tests need a real server on 127.0.0.1; the script installs and
# starts one when missing and prints its URL. Without TRIBUTARY_TEST_POSTGRES_URL they fail.
start_postgres() {
    TRIBUTARY_TEST_POSTGRES_URL=$(bash scripts/start-postgres.sh)
    export TRIBUTARY_TEST_POSTGRES_URL
}
stage "PostgreSQL for the warehouse tests (scripts/start-postgres.sh)" start_postgres
stage "cargo test" cargo test --workspace "${kinesis[@]}" --locked
# AWS mode's Lambda binaries under `cargo lambda watch` (127.0.0.1) against moto: the router
# invoked with the mixed Kinesis fixture, the ingest over plain HTTP, the connector.
stage "Lambda functions under cargo lambda watch (scripts/test-lambda-watch.sh)" \
    bash scripts/test-lambda-watch.sh
stage "sdk-core on wasm32-unknown-unknown" \
    cargo check -p tributary-core --target wasm32-unknown-unknown --locked
stage "cargo doc" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps "${kinesis[@]}" --locked
# README's first command, checked: the demo traffic lands exactly as samples/rules.json says.
stage "demo (scripts/demo.sh --check)" env TRIBUTARY_LISTEN=127.0.0.1:0 bash scripts/demo.sh --check
# The status page in headless Chromium (installs chromium and the npm packages when missing).
stage "status page in Chromium (scripts/test-browser.sh)" bash scripts/test-browser.sh
# Segment compatibility (issue 9): Segment's own @segment/analytics-node, from npm, sends every
# call type to `tributary serve` and the test finds the mapped envelopes in the warehouse
# (installs node and the npm packages of tests/segment when missing).
stage "Segment's analytics-node against serve (scripts/test-segment.sh)" bash scripts/test-segment.sh
# Reliability (issue 10): the fault, hostile-client and security tests and the conformance
# scenarios, each printing its counts (sent / accepted / delivered / dead-lettered / lost,
# answers, peak memory) for docs/RELIABILITY.md. They already passed in "cargo test"; this stage
# reruns only them with their output shown (about a minute, the builds being done).
stage "reliability report (scripts/reliability.sh)" bash scripts/reliability.sh

# sdk-mobile (issue 7). The Swift files: the generated bindings, FFI header, module map and
# Package.swift regenerated from the Rust library and compared with the checked-in ones, then
# every Swift file parsed with tree-sitter-swift (npm, installed when missing; no Swift compiler
# runs on Linux). Then the bindings' tests against a real `tributary serve`: Python (with the
# kill -9 test) and Kotlin (`mvn test`; Maven and a JDK installed when missing), each running the
# conformance suite (tests/conformance/) against a scripted endpoint on 127.0.0.1.
stage "sdk-mobile Swift checks (scripts/check-swift.sh)" bash scripts/check-swift.sh
stage "sdk-mobile binding tests: Python, kill -9, Kotlin, conformance (scripts/test-mobile.sh)" bash scripts/test-mobile.sh

# The web SDK (@tributary/web): wasm-bindgen-test in headless Chromium, `npm run build` and its
# size budget, the Vite sample, and the end-to-end tests with playwright-core against
# `tributary serve` (installs chromium-driver, wasm-bindgen-cli, nightly's rust-src and the npm
# packages when missing; its stages are timed inside). The conformance suite runs in two of
# them: through the wasm module (wasm-bindgen-test) and through the built package (tests/web/).
stage "web SDK, conformance included (scripts/test-web.sh)" bash scripts/test-web.sh

echo "all stages passed in $(($(date +%s) - suite_started)) s"
