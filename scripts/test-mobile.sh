#!/usr/bin/env bash
# sdk-mobile's binding tests, against a real `tributary serve` (each test starts its own on
# 127.0.0.1 with a free port and a temp data dir):
# 1. lints the test build of the library (feature `test-clock`, which the workspace lint skips);
# 2. builds the backend binary and the bindings of a test build (scripts/generate-bindings.sh test);
# 3. the Python binding tests, the kill -9 test and the conformance suite (tests/conformance/,
#    test_conformance.py: every scenario against a scripted endpoint) (python3 -m unittest, no
#    extra packages);
# 4. the Kotlin package: `mvn test` in sdk-mobile/kotlin, the conformance suite included
#    (ConformanceTest.kt) (installs Maven and a JDK when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary-target}"
source scripts/lib/toolchain.sh
ensure_rust_toolchain >/dev/null

echo "==> clippy on the test build (feature test-clock)"
cargo clippy -p tributary-mobile --all-targets --features test-clock,bindgen --locked -- -D warnings
echo "==> unit tests of the test build (the conformance presets file matches the core)"
cargo test -p tributary-mobile --features test-clock --lib --locked
echo "==> building tributary and the bindings"
cargo build -p tributary-backend --bin tributary --locked --quiet
export TRIBUTARY_BIN="$CARGO_TARGET_DIR/debug/tributary"
bash scripts/generate-bindings.sh test

echo "==> Python binding tests and the conformance suite (sdk-mobile/python/tests)"
python3 -m unittest discover -s sdk-mobile/python/tests -v

echo "==> Kotlin package tests (mvn test in sdk-mobile/kotlin)"
if ! command -v mvn >/dev/null || ! command -v javac >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven openjdk-17-jdk-headless >/dev/null
fi
cd "$root/sdk-mobile/kotlin"
# The bindings were generated above; -ntp keeps downloads out of the log, Surefire's summary stays.
mvn -B -ntp -Dstyle.color=never test -Dtributary.skipBindings=true
# Maven's launcher ends its output with a terminal reset and no newline: end the line.
echo
