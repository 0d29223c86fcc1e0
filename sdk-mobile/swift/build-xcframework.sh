#!/usr/bin/env bash
# Builds TributaryMobileFFI.xcframework (the Rust library for iOS devices, the iOS simulator and
# macOS, with the FFI module's header and module map) beside Package.swift. Runs on macOS with
# Xcode and rustup; not on the Linux CI (see ../README.md for what is and is not built there).
#
#   sdk-mobile/swift/build-xcframework.sh            release build
#   cd sdk-mobile/swift && swift test                then the package's tests
set -euo pipefail
cd "$(dirname "$0")"
swift_dir=$PWD
root=$(cd ../.. && pwd)
[ "$(uname -s)" = Darwin ] || { echo "build-xcframework.sh needs macOS and Xcode" >&2; exit 1; }

# The checked-in bindings must match the Rust API this build exports.
bash "$root/scripts/generate-bindings.sh" --check

targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin)
rustup target add "${targets[@]}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export IPHONEOS_DEPLOYMENT_TARGET=13.0 MACOSX_DEPLOYMENT_TARGET=11.0
for target in "${targets[@]}"; do
    (cd "$root" && cargo build -p tributary-mobile --lib --release --locked --target "$target")
done

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
lib=libtributary_mobile.a
built() { echo "$CARGO_TARGET_DIR/$1/release/$lib"; }
mkdir -p "$out/ios" "$out/ios-simulator" "$out/macos"
cp "$(built aarch64-apple-ios)" "$out/ios/$lib"
lipo -create "$(built aarch64-apple-ios-sim)" "$(built x86_64-apple-ios)" -output "$out/ios-simulator/$lib"
lipo -create "$(built aarch64-apple-darwin)" "$(built x86_64-apple-darwin)" -output "$out/macos/$lib"

headers=$swift_dir/Sources/TributaryMobileFFI/include
rm -rf TributaryMobileFFI.xcframework
xcodebuild -create-xcframework \
    -library "$out/ios/$lib" -headers "$headers" \
    -library "$out/ios-simulator/$lib" -headers "$headers" \
    -library "$out/macos/$lib" -headers "$headers" \
    -output TributaryMobileFFI.xcframework
echo "built $swift_dir/TributaryMobileFFI.xcframework"
