#!/usr/bin/env bash
# Builds the Android library's native parts: libtributary_mobile.so for each ABI into
# src/main/jniLibs/<abi>/ with cargo-ndk, and the Kotlin bindings of the release API (no test
# clock) into generated/src. Then `gradle assembleRelease` here makes the AAR.
# Needs the Android NDK (ANDROID_NDK_HOME) and `cargo install cargo-ndk`; not run on the CI.
set -euo pipefail
cd "$(dirname "$0")"
android=$PWD
root=$(cd ../../.. && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android i686-linux-android
command -v cargo-ndk >/dev/null || cargo install cargo-ndk --locked
(cd "$root" && cargo ndk -t arm64-v8a -t armeabi-v7a -t x86_64 -t x86 --platform 26 \
    -o "$android/src/main/jniLibs" build -p tributary-mobile --lib --release --locked)
bash "$root/scripts/generate-bindings.sh" kotlin-release "$android/generated/src"
echo "native libraries in src/main/jniLibs, bindings in generated/src: now gradle assembleRelease"
