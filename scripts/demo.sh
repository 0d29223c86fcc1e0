#!/usr/bin/env bash
# README's first command: build Tributary, start `tributary serve` with its built-in defaults,
# send the demo traffic through the server SDK, and show where every event went.
#
#   ./scripts/demo.sh           start, send, report, then keep serving until Ctrl-C
#   ./scripts/demo.sh --check   start, send, check the counts exactly, stop (used by the tests)
#
# Data goes to ./demo/tributary-data (cleared at each run). TRIBUTARY_LISTEN picks the address
# (default 127.0.0.1:8080; port 0 picks a free one).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mode=${1:-serve}
case "$mode" in serve | --check) ;; *) echo "usage: $0 [--check]" >&2; exit 2 ;; esac

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary-target}"
source scripts/lib/toolchain.sh
ensure_rust_toolchain >/dev/null
echo "==> building tributary (cargo build -p tributary-backend)"
cargo build -p tributary-backend --bin tributary --locked --quiet
bin="$CARGO_TARGET_DIR/debug/tributary"

demo_dir="$root/demo"
rm -rf "$demo_dir/tributary-data"
mkdir -p "$demo_dir"
cd "$demo_dir"
"$bin" serve --listen "${TRIBUTARY_LISTEN:-127.0.0.1:8080}" >serve.out 2>serve.log &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT

address=""
for _ in $(seq 1 300); do
    address=$(sed -n 's|^tributary: listening on http://||p' serve.out)
    [ -n "$address" ] && break
    if ! kill -0 "$server" 2>/dev/null; then
        echo "tributary serve did not start:" >&2
        cat serve.log >&2
        exit 1
    fi
    sleep 0.1
done
[ -n "$address" ] || { echo "tributary serve did not start within 30 s" >&2; exit 1; }
echo "==> tributary serve is running at http://$address (data in $demo_dir/tributary-data)"

echo "==> sending the demo traffic: tributary send --endpoint http://$address"
"$bin" send --endpoint "http://$address"

counts() {
    python3 - "$demo_dir/tributary-data" <<'PY'
import os, sqlite3, sys
data = sys.argv[1]
def lines(name):
    path = os.path.join(data, name)
    return sum(1 for _ in open(path)) if os.path.exists(path) else 0
try:
    connection = sqlite3.connect(os.path.join(data, "warehouse.db"), timeout=5)
    warehouse = connection.execute("SELECT COUNT(*) FROM events").fetchone()[0]
except sqlite3.Error:
    warehouse = 0
print(warehouse, lines("archive.jsonl"), lines("mixpanel.jsonl"), lines("hubspotcrm.jsonl"))
PY
}
for _ in $(seq 1 200); do
    read -r warehouse archive mixpanel hubspot < <(counts)
    [ "$warehouse" -ge 270 ] && [ "$archive" -ge 300 ] && break
    sleep 0.1
done
sleep 0.3
read -r warehouse archive mixpanel hubspot < <(counts)
cat <<REPORT
==> where the 300 events went (samples/rules.json):
    datawarehouse  $warehouse events  in tributary-data/warehouse.db   (the 270 with the article's names)
    archive        $archive events  in tributary-data/archive.jsonl    (all of them: "*")
    mixpanel       $mixpanel events  in tributary-data/mixpanel.jsonl
    hubspotcrm     $hubspot events  in tributary-data/hubspotcrm.jsonl
==> status page: http://$address/     metrics: http://$address/metrics
REPORT

if [ "$mode" = "--check" ]; then
    if [ "$warehouse" != 270 ] || [ "$archive" != 300 ] || [ "$mixpanel" != 120 ] || [ "$hubspot" != 210 ]; then
        echo "demo check FAILED: expected 270 / 300 / 120 / 210" >&2
        exit 1
    fi
    kill -TERM "$server"
    wait "$server"
    trap - EXIT
    echo "demo check passed"
    exit 0
fi
echo "==> serving until Ctrl-C; send more with: $bin send --endpoint http://$address --count 1000"
trap 'kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' INT TERM
wait "$server"
