#!/usr/bin/env bash
# Starts a moto server (a local AWS emulator) on 127.0.0.1 for the Kinesis mode tests, and
# installs the Python packages those tests use when they are missing: moto[server] and
# aws-kinesis-agg (the reference KPL aggregator). Idempotent: when moto already answers on the
# port it only prints the address.
#
#   eval "$(scripts/start-moto.sh)"   # exports TRIBUTARY_TEST_MOTO_URL for cargo test
#   scripts/start-moto.sh --stop      # stops the server this script started
#
# stdout carries only the export line; progress goes to stderr. TRIBUTARY_MOTO_PORT overrides
# the port (default 5799). The server keeps running after the script (and the test suite) ends.
set -euo pipefail

port="${TRIBUTARY_MOTO_PORT:-5799}"
url="http://127.0.0.1:$port"
state_dir="${XDG_RUNTIME_DIR:-${TMPDIR:-/tmp}}/tributary-moto-$port"
python="${PYTHON:-python3}"

# Whether an HTTP server answers on the port (moto answers an unknown path with an error status,
# which is enough; /moto-api/data.json would dump every stream's records).
answers() {
    "$python" - "$url" <<'PY' 2>/dev/null
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/moto-api/", timeout=2).read(1)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
PY
}

if [[ "${1:-}" == "--stop" ]]; then
    if [[ -f "$state_dir/pid" ]]; then
        kill "$(cat "$state_dir/pid")" 2>/dev/null || true
        rm -f "$state_dir/pid"
        echo "moto on $url stopped" >&2
    fi
    exit 0
fi

if ! command -v "$python" >/dev/null 2>&1; then
    echo "start-moto.sh: $python is missing (Kinesis mode tests need Python 3)" >&2
    exit 1
fi

missing=()
"$python" -c "import moto.server, flask, flask_cors" 2>/dev/null || missing+=("moto[server]")
"$python" -c "import aws_kinesis_agg" 2>/dev/null || missing+=("aws-kinesis-agg")
if ((${#missing[@]})); then
    echo "start-moto.sh: installing ${missing[*]}" >&2
    "$python" -m pip install --quiet --disable-pip-version-check "${missing[@]}" >&2
fi

if ! answers; then
    mkdir -p "$state_dir"
    # moto_server is the package's entry point; `python -m moto.server` is the same program.
    setsid "$python" -m moto.server -H 127.0.0.1 -p "$port" \
        >"$state_dir/moto.log" 2>&1 </dev/null &
    started=$!
    for _ in $(seq 1 100); do
        answers && break
        kill -0 "$started" 2>/dev/null || break
        sleep 0.1
    done
    if ! answers; then
        kill "$started" 2>/dev/null || true
        echo "start-moto.sh: moto did not answer on $url; its log:" >&2
        cat "$state_dir/moto.log" >&2
        exit 1
    fi
    # Only a server that answers is recorded, for --stop.
    echo "$started" >"$state_dir/pid"
    echo "start-moto.sh: moto started on $url (log: $state_dir/moto.log)" >&2
else
    echo "start-moto.sh: moto already answers on $url" >&2
fi
echo "export TRIBUTARY_TEST_MOTO_URL=$url"
