#!/usr/bin/env bash
# AWS mode's three Lambda binaries under the local Lambda emulator, `cargo lambda watch`, against
# moto: the router invoked with backend/tests/data/kinesis-event-mixed.json must answer an empty
# batchItemFailures and put the eleven events in the destination queue and the poison record in
# its DLQ; the ingest must answer plain HTTP (200 with the events in the stream, 401 without a
# key); the connector must deliver the router's payload.
#
# Installs cargo-lambda when missing (scripts/lib/aws-tools.sh) and starts moto
# (scripts/start-moto.sh); the emulator listens on 127.0.0.1 only and is stopped at the end.
# TRIBUTARY_LAMBDA_PORT overrides its port (default 9311).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
source scripts/lib/aws-tools.sh
ensure_aws_tools >/dev/null
eval "$(bash scripts/start-moto.sh)"
moto="$TRIBUTARY_TEST_MOTO_URL"
port="${TRIBUTARY_LAMBDA_PORT:-9311}"
work=$(mktemp -d)
watch_pid=""
cleanup() {
    if [[ -n "$watch_pid" ]]; then
        kill -- "-$watch_pid" 2>/dev/null || kill "$watch_pid" 2>/dev/null || true
        wait "$watch_pid" 2>/dev/null || true
    fi
    if [[ -f "$work/resources.json" ]]; then
        # moto is shared and keeps every record in memory: the stream goes.
        python3 - "$work/resources.json" <<'PY' || true
import json, sys
import boto3
boto3.client("kinesis").delete_stream(StreamName=json.load(open(sys.argv[1]))["stream"])
PY
    fi
    rm -rf "$work"
}
trap cleanup EXIT

export AWS_ENDPOINT_URL="$moto" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test

# The resources, with names of their own (moto is shared).
run_id="watch-$$-$(date +%s)"
python3 - "$run_id" "$work" <<'PY'
import json, sys
import boto3
run, work = sys.argv[1], sys.argv[2]
sqs, s3, kinesis = boto3.client("sqs"), boto3.client("s3"), boto3.client("kinesis")
def queue(name):
    url = sqs.create_queue(QueueName=f"{name}-{run}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn
archive_url, archive_arn = queue("archive")
dlq_url, _ = queue("router-dlq")
connector_dlq_url, _ = queue("connector-dlq")
bucket = f"rules-{run}"
s3.create_bucket(Bucket=bucket)
s3.put_object(Bucket=bucket, Key="rules.json", Body=json.dumps([
    {"destination_name": "archive", "destination_arn": archive_arn, "enabled_events": ["*"]}]))
stream = f"stream-{run}"
kinesis.create_stream(StreamName=stream, ShardCount=1)
json.dump({"archive_url": archive_url, "dlq_url": dlq_url, "connector_dlq_url": connector_dlq_url,
           "bucket": bucket, "stream": stream}, open(f"{work}/resources.json", "w"))
PY
resource() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$work/resources.json" "$1"; }

config="[destinations.archive]
kind = \"jsonl\"
path = \"$work/connector-archive.jsonl\""
env_vars=(
    "TRIBUTARY_STREAM=$(resource stream)"
    "TRIBUTARY_WRITE_KEYS=watch-write-key"
    "TRIBUTARY_PUT_TIMEOUT_MS=5000"
    "TRIBUTARY_RULES_BUCKET=$(resource bucket)"
    "TRIBUTARY_S3_PATH_STYLE=1"
    "TRIBUTARY_ROUTER_DLQ_URL=$(resource dlq_url)"
    "TRIBUTARY_DESTINATION=archive"
    "TRIBUTARY_CONNECTOR_DLQ_URL=$(resource connector_dlq_url)"
)
printf '%s\n' "${env_vars[@]}" >"$work/env"
# A multi-line value does not fit an env file; the emulator passes its own environment on.
export TRIBUTARY_CONNECTOR_CONFIG="$config"

export PATH="$AWS_TOOLS_BIN:$PATH"
# The emulator in its own process group, so the cleanup stops it and the functions it started.
setsid cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$port" \
    --package tributary-backend --features aws --ignore-changes --env-file "$work/env" \
    >"$work/watch.log" 2>&1 &
watch_pid=$!

for _ in $(seq 1 600); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then break; fi
    if ! kill -0 "$watch_pid" 2>/dev/null; then
        cat "$work/watch.log" >&2
        echo "test-lambda-watch: cargo lambda watch exited" >&2
        exit 1
    fi
    sleep 0.5
done

fail() {
    echo "test-lambda-watch: $*" >&2
    echo "--- cargo lambda watch log (last 40 lines)" >&2
    tail -40 "$work/watch.log" >&2
    exit 1
}

invoke() {
    cargo lambda invoke "$1" --invoke-address 127.0.0.1 --invoke-port "$port" \
        --data-file "$2" --output-format json
}

# 1. The router with the mixed Kinesis event.
answer=$(invoke tributary-router backend/tests/data/kinesis-event-mixed.json) ||
    fail "invoking the router failed: $answer"
echo "router: $answer"
python3 - "$answer" "$(resource archive_url)" "$(resource dlq_url)" <<'PY' || fail "router check failed"
import json, sys
import boto3
answer, archive, dlq = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
assert answer == {"batchItemFailures": []}, answer
sqs = boto3.client("sqs")
def drain(url):
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
events = [event for body in drain(archive) for event in body["events"]]
assert len(events) == 11 and len({e["id"] for e in events}) == 11, events
poison = drain(dlq)
assert len(poison) == 1 and poison[0]["kind"] == "poison_record", poison
print(f"router: 11 events in the archive queue, 1 poison record in the DLQ")
PY

# 2. The ingest over plain HTTP (the emulator's function URL).
ingest="http://127.0.0.1:$port/lambda-url/tributary-ingest"
status=$(curl -s -o "$work/ingest.json" -w '%{http_code}' -X POST "$ingest/v1/batch" \
    -H 'Authorization: Bearer watch-write-key' -H 'Content-Type: application/json' \
    -d '{"batch": [{"id": "0192f0c4-1b2a-7c3d-8e4f-0000000000w1", "name": "login", "data": {}},
                   {"id": "0192f0c4-1b2a-7c3d-8e4f-0000000000w2", "name": "page_view", "data": {}}]}')
echo "ingest: $status $(cat "$work/ingest.json")"
[[ "$status" == 200 ]] || fail "the ingest answered $status"
python3 - "$work/ingest.json" <<'PY' || fail "the ingest's answer"
import json, sys
body = json.load(open(sys.argv[1]))
assert body == {"accepted": 2, "rejected": []}, body
PY
status=$(curl -s -o "$work/ingest.json" -w '%{http_code}' -X POST "$ingest/v1/batch" \
    -H 'Content-Type: application/json' -d '{"batch": [{"name": "login", "data": {}}]}')
echo "ingest without a key: $status $(cat "$work/ingest.json")"
[[ "$status" == 401 ]] || fail "the ingest answered $status without a key"
status=$(curl -s -o /dev/null -w '%{http_code}' "$ingest/healthz")
[[ "$status" == 200 ]] || fail "GET /healthz answered $status"
python3 - "$(resource stream)" <<'PY' || fail "the events are not in the stream"
import gzip
import sys
import boto3
kinesis = boto3.client("kinesis")
stream = sys.argv[1]
shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard,
                                      ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
records = [r["Data"] for r in kinesis.get_records(ShardIterator=iterator)["Records"]]
# The ingest gzips its records (TRIBUTARY_RECORD_COMPRESSION, default gzip).
assert records and all(record[:2] == b"\x1f\x8b" for record in records), records[:1]
data = b"".join(gzip.decompress(record) for record in records)
for event_id in (b"0000000000w1", b"0000000000w2"):
    assert event_id in data, (event_id, data[:200])
print("ingest: both events are in the stream")
PY

# 3. The connector with the router's payload.
printf '%s' '{"destination": "archive", "events": [{"id": "c-1", "name": "login", "data": {}}]}' \
    >"$work/payload.json"
answer=$(invoke tributary-connector "$work/payload.json") || fail "invoking the connector: $answer"
echo "connector: $answer"
python3 -c 'import json, sys; assert json.loads(sys.argv[1]) == {"delivered": 1, "dead_lettered": 0}' \
    "$answer" || fail "the connector answered $answer"
grep -q '"id":"c-1"' "$work/connector-archive.jsonl" || fail "the connector wrote nothing"

echo "cargo lambda watch: router, ingest and connector passed"
