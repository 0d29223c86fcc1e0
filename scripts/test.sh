#!/usr/bin/env bash
# The whole test suite: formatting, lints, every crate's tests, the wasm32 build of sdk-core,
# the docs, README's first command (scripts/demo.sh --check), the status page in headless
# Chromium (scripts/test-browser.sh) and Segment's analytics-node against `tributary serve`
# (scripts/test-segment.sh), and the reliability report (scripts/reliability.sh). README.md gives
# this command; .ci/run runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# One cargo target directory outside the clone, reused across clones and CI runs.
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

source scripts/lib/toolchain.sh
stage "toolchain" ensure_rust_toolchain

stage "cargo fmt --check" cargo fmt --all -- --check
# sdk-server's Kinesis mode is behind its `kinesis` feature (off by default): lint, test and
# document it too.
kinesis=(--features tributary-server/kinesis)
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

echo "all stages passed in $(($(date +%s) - suite_started)) s"
