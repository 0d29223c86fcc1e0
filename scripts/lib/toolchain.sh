# Installs what the Rust build needs, only when it is missing.

ensure_rust_toolchain() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo is missing: install Rust with rustup (https://rustup.rs)" >&2
        return 1
    fi
    # The toolchain rust-toolchain.toml pins, with its components and targets (rustup would also
    # install it on first use; said here so the stage's time shows it).
    local pinned
    pinned=$(sed -n 's/^channel = "\(.*\)"$/\1/p' rust-toolchain.toml)
    if [ -n "$pinned" ] && ! rustup toolchain list | grep -q "^$pinned"; then
        rustup toolchain install
    fi
    local installed
    installed=$(rustup component list --installed 2>/dev/null || true)
    for component in rustfmt clippy; do
        if ! grep -q "^$component" <<<"$installed"; then
            rustup component add "$component"
        fi
    done
    if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
        rustup target add wasm32-unknown-unknown
    fi
    cargo --version
}
