#!/usr/bin/env bash
# The Swift checks that run on Linux (no Swift compiler here):
# 1. the generated Swift bindings, FFI header, module map and Package.swift are regenerated from
#    the Rust library and compared with the checked-in ones (scripts/generate-bindings.sh --check);
# 2. every Swift file of sdk-mobile/swift and samples/ios parses with tree-sitter-swift (npm; the
#    packages are installed into sdk-mobile/swift/parse-check/node_modules when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

bash scripts/generate-bindings.sh --check

checker=$root/sdk-mobile/swift/parse-check
if [ ! -d "$checker/node_modules/tree-sitter-swift" ] || [ ! -d "$checker/node_modules/tree-sitter" ]; then
    command -v npm >/dev/null || { echo "npm is missing (apt-get install nodejs npm)" >&2; exit 1; }
    # --ignore-scripts: both packages ship prebuilt parsers for linux-x64 (node-gyp-build loads
    # them); tree-sitter-cli's install script would download its binary from GitHub, which this
    # checker does not need.
    (cd "$checker" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
mapfile -t files < <(find sdk-mobile/swift samples/ios -name '*.swift' -not -path '*/node_modules/*' -not -path '*/.build/*' | sort)
node "$checker/check.js" "${files[@]}"
