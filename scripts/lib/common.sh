# Helpers the test scripts share (sourced, not run): timed stages and installing what is missing.

# `stage NAME COMMAND…` runs COMMAND between a `==> NAME` line and a `<== NAME: N s` line.
stage() {
    local name=$1
    shift
    local started
    started=$(date +%s)
    echo "==> $name"
    "$@"
    echo "<== $name: $(($(date +%s) - started)) s"
}

# Debian packages, only those missing: `ensure_debian_packages PACKAGE=PATH…` installs PACKAGE
# when PATH is not executable. The package lists are refreshed only when installing from the
# lists apt has fails (they may be stale or missing on a fresh machine).
ensure_debian_packages() {
    local missing=() pair
    for pair in "$@"; do
        [[ -x "${pair#*=}" ]] || missing+=("${pair%%=*}")
    done
    if ((${#missing[@]})); then
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get install -y "${missing[@]}"; then
            apt-get update
            apt-get install -y "${missing[@]}"
        fi
    fi
}

# Node and npm (Debian's packages), only when missing.
ensure_node() {
    local node npm
    node=$(command -v node || true)
    npm=$(command -v npm || true)
    ensure_debian_packages nodejs="${node:-/usr/bin/node}" npm="${npm:-/usr/bin/npm}"
    echo "node $(node --version), npm $(npm --version)"
}

# `ensure_node_modules DIR`: `npm ci` in DIR when node_modules is missing or was installed from
# another package.json/package-lock.json (a stamp file records which).
ensure_node_modules() {
    local dir=$1 stamp=$1/node_modules/.installed-from wanted
    wanted=$(cat "$dir/package.json" "$dir/package-lock.json" | sha256sum | cut -d' ' -f1)
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
        echo "$dir/node_modules is up to date"
        return
    fi
    (cd "$dir" && npm ci --no-audit --no-fund)
    echo "$wanted" >"$stamp"
}
