//! AWS mode end to end against moto: the ingest handler (through `lambda_http`) → moto Kinesis →
//!
//! - `tributary serve --source kinesis:STREAM` (the real binary) → local connectors, through a
//!   shard split (moto keeps writing to the parent, so this only checks that nothing is lost), a
//!   `kill -9` and a restart from the checkpoints;
//! - the router handler fed with the same records (as Lambda's Kinesis event) → an SQS
//!   destination queue → the connector handler fed with that queue's messages (as Lambda's SQS
//!   event) → a local file; the rules read from moto S3 and changed between two batches.
//!
//! Every accepted event arrives; the poison record is set aside, never delivered.

#![cfg(feature = "aws")]
#![allow(clippy::print_stderr)]

mod aws_common;

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use base64::Engine;
use serde_json::{Value, json};
use tower::ServiceExt;
use tributary_backend::aws::SqsDeadLetterQueue;
use tributary_backend::aws::connector::ConnectorFunction;
use tributary_backend::aws::destinations::Destinations;
use tributary_backend::aws::ingest::{self, IngestSettings};
use tributary_backend::aws::kinesis_sink::{KinesisSink, StreamWrites};
use tributary_backend::aws::router::RouterFunction;
use tributary_backend::aws::rules_source::S3Rules;

use aws_common::{
    BINARY, Queue, connector_config, create_queue, create_stream, delete_stream, moto_url,
    read_stream, s3_client, sdk_config, unique,
};

const KEY: &str = "e2e-write-key";

/// `count` events from `start`, ids `e2e-N`, names in turn.
fn events(start: usize, count: usize) -> Vec<Value> {
    const NAMES: [&str; 3] = ["login", "page_view", "button_click"];
    (start..start + count)
        .map(|i| {
            json!({"id": format!("0192f0c4-1b2a-7c3d-8e4f-{i:012}"), "name": NAMES[i % 3],
                   "data": {"i": i}, "anonymous_id": format!("anon-{}", i % 7)})
        })
        .collect()
}

fn ids(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect()
}

/// POSTs a batch through the ingest function as API Gateway would.
async fn ingest_batch(router: &axum::Router, batch: &[Value]) -> Value {
    let request = json!({
        "resource": "/v1/batch", "path": "/v1/batch", "httpMethod": "POST",
        "headers": {"Authorization": format!("Bearer {KEY}"), "Content-Type": "application/json"},
        "multiValueHeaders": {"Authorization": [format!("Bearer {KEY}")], "Content-Type": ["application/json"]},
        "requestContext": {"stage": "prod", "requestId": "r", "httpMethod": "POST",
                           "resourcePath": "/v1/batch", "path": "/prod/v1/batch",
                           "identity": {"sourceIp": "203.0.113.9"}, "accountId": "123456789012",
                           "apiId": "api", "resourceId": "res", "protocol": "HTTP/1.1"},
        "body": json!({"batch": batch}).to_string(), "isBase64Encoded": false
    });
    let request: lambda_http::request::LambdaRequest = serde_json::from_value(request).unwrap();
    let response = lambda_http::Adapter::from(ingest::lambda_service(router.clone()))
        .oneshot(lambda_runtime::LambdaEvent::new(
            request,
            lambda_runtime::Context::default(),
        ))
        .await
        .unwrap();
    let response = serde_json::to_value(response).unwrap();
    assert_eq!(response["statusCode"], 200, "{response:#}");
    response
}

struct Serve {
    child: Option<Child>,
    folder: std::path::PathBuf,
    moto: String,
    stream: String,
}

impl Serve {
    fn start(folder: &Path, moto: &str, stream: &str) -> Self {
        let mut serve = Self {
            child: None,
            folder: folder.to_owned(),
            moto: moto.to_owned(),
            stream: stream.to_owned(),
        };
        serve.launch();
        serve
    }

    fn launch(&mut self) {
        let source = format!("kinesis:{}", self.stream);
        let mut child = Command::new(BINARY)
            .args(["serve", "--config", "tributary.toml", "--source", &source])
            .current_dir(&self.folder)
            .env("AWS_ENDPOINT_URL", &self.moto)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("RUST_LOG", "warn,tributary_backend=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.folder.join("serve.log"))
                    .unwrap(),
            ))
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            let line = lines.next().expect("serve started").unwrap();
            if line.starts_with("tributary: consuming Kinesis stream") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn jsonl(&self, name: &str) -> Vec<Value> {
        std::fs::read_to_string(self.folder.join(name))
            .unwrap_or_default()
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    async fn wait_for(&self, name: &str, wanted: &BTreeSet<String>) {
        let started = Instant::now();
        loop {
            let got = ids(&self.jsonl(name));
            if wanted.is_subset(&got) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{name}: missing {:?}\n{}",
                wanted.difference(&got).collect::<Vec<_>>(),
                std::fs::read_to_string(self.folder.join("serve.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Every record of the stream, as Lambda's Kinesis event records.
async fn stream_records(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Vec<Value> {
    let mut records = Vec::new();
    for (shard_id, stored) in read_stream(kinesis, stream).await {
        for record in &stored {
            let arrival = record.approximate_arrival_timestamp().unwrap();
            records.push(json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": record.partition_key(),
                    "sequenceNumber": record.sequence_number(),
                    "data": base64::engine::general_purpose::STANDARD.encode(record.data().as_ref()),
                    "approximateArrivalTimestamp": arrival.as_secs_f64(),
                },
                "eventSource": "aws:kinesis", "eventVersion": "1.0",
                "eventID": format!("{shard_id}:{}", record.sequence_number()),
                "eventName": "aws:kinesis:record", "awsRegion": "us-east-1",
                "eventSourceARN": format!("arn:aws:kinesis:us-east-1:123456789012:stream/{stream}"),
            }));
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_to_kinesis_to_serve_and_to_the_router_and_connector_functions() {
    let Some(moto) = moto_url() else { return };
    let config = sdk_config(&moto).await;
    let kinesis = aws_sdk_kinesis::Client::new(&config);
    let stream = create_stream(&kinesis, "e2e", 2).await;
    let sink = KinesisSink::new(
        &config,
        &stream,
        Duration::from_secs(5),
        StreamWrites::for_concurrency(1),
    )
    .await
    .unwrap();
    let ingest = ingest::router(
        Arc::new(sink),
        &IngestSettings {
            write_keys: vec![KEY.into()],
            allowed_origins: vec!["*".into()],
            rate_limit_per_key: 0,
            ip_mode: Default::default(),
        },
    );

    // 1. 120 events through the ingest, a raw envelope without received_at, and a poison record.
    let first = events(0, 120);
    for chunk in first.chunks(40) {
        ingest_batch(&ingest, chunk).await;
    }
    kinesis
        .put_record()
        .stream_name(&stream)
        .partition_key("direct")
        .data(aws_sdk_kinesis::primitives::Blob::new(
            json!({"id": "direct-1", "name": "login", "data": {}}).to_string(),
        ))
        .send()
        .await
        .unwrap();
    kinesis
        .put_record()
        .stream_name(&stream)
        .partition_key("poison")
        .data(aws_sdk_kinesis::primitives::Blob::new(
            &b"\xff not an event"[..],
        ))
        .send()
        .await
        .unwrap();

    // 2. `tributary serve --source kinesis:STREAM`.
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(
        folder.path().join("tributary.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nwrite_keys = [\"{KEY}\"]\n[storage]\ndata_dir = \"data\"\n\
             [routing]\nrules = \"rules.json\"\n\
             [destinations.archive]\nkind = \"jsonl\"\npath = \"archive.jsonl\"\n\
             [destinations.logins]\nkind = \"jsonl\"\npath = \"logins.jsonl\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        folder.path().join("rules.json"),
        json!([
            {"destination_name": "archive", "destination_arn": "local", "enabled_events": ["*"]},
            {"destination_name": "logins", "destination_arn": "local", "enabled_events": ["login"]},
        ])
        .to_string(),
    )
    .unwrap();
    let mut serve = Serve::start(folder.path(), &moto, &stream);
    let mut expected = ids(&first);
    expected.insert("direct-1".into());
    serve.wait_for("archive.jsonl", &expected).await;
    let direct = serve
        .jsonl("archive.jsonl")
        .into_iter()
        .find(|e| e["id"] == "direct-1")
        .unwrap();
    assert!(direct["received_at"].is_string(), "{direct}");
    let poison = std::fs::read_to_string(folder.path().join("data/kinesis-poison.jsonl")).unwrap();
    assert_eq!(poison.lines().count(), 1);
    assert!(poison.contains("\"partition_key\":\"poison\""));

    // 3. A shard split, more events, a kill -9, more events, a restart: nothing lost.
    let shards = kinesis
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .unwrap();
    let shard = &shards.shards()[0];
    let range = shard.hash_key_range().unwrap();
    let middle = (range.starting_hash_key().parse::<u128>().unwrap()
        + range.ending_hash_key().parse::<u128>().unwrap())
        / 2;
    kinesis
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(shard.shard_id())
        .new_starting_hash_key(middle.to_string())
        .send()
        .await
        .unwrap();
    let second = events(120, 60);
    ingest_batch(&ingest, &second).await;
    expected.extend(ids(&second));
    serve.wait_for("archive.jsonl", &expected).await;
    serve.kill9();
    let third = events(180, 60);
    ingest_batch(&ingest, &third).await;
    expected.extend(ids(&third));
    serve.launch();
    serve.wait_for("archive.jsonl", &expected).await;
    let archived = serve.jsonl("archive.jsonl");
    assert_eq!(ids(&archived), expected, "exactly the accepted events");
    let logins = serve.jsonl("logins.jsonl");
    assert!(logins.iter().all(|e| e["name"] == "login"));
    assert_eq!(
        ids(&logins),
        ids(&archived
            .iter()
            .filter(|e| e["name"] == "login")
            .cloned()
            .collect::<Vec<_>>())
    );
    let checkpoints: Value = serde_json::from_str(
        &std::fs::read_to_string(folder.path().join("data/kinesis-checkpoints.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(checkpoints["stream"], stream.as_str());
    // moto keeps writing to a split shard (real Kinesis closes it; the reading order across
    // parents and children is unit-tested in stream_source), so here the split only has to
    // lose nothing.
    assert!(
        checkpoints["shards"].as_object().unwrap().len() >= 2,
        "{checkpoints}"
    );
    let poison = std::fs::read_to_string(folder.path().join("data/kinesis-poison.jsonl")).unwrap();
    assert_eq!(
        poison.lines().count(),
        1,
        "the restart did not read the poison record again"
    );
    serve.kill9();

    // 4. The router function fed with the same records, rules in moto S3 → an SQS queue → the
    //    connector function fed with that queue's messages → a file.
    let sqs = aws_sdk_sqs::Client::new(&config);
    let s3 = s3_client(&config);
    let bucket = unique("e2e-rules");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let Queue {
        url: destination_url,
        arn: destination_arn,
    } = create_queue(&sqs, "e2e-connector").await;
    let router_dlq_url = create_queue(&sqs, "e2e-router-dlq").await.url;
    let connector_dlq_url = create_queue(&sqs, "e2e-connector-dlq").await.url;
    let put_rules = |enabled: Value| {
        let s3 = s3.clone();
        let bucket = bucket.clone();
        let arn = destination_arn.clone();
        async move {
            s3.put_object()
                .bucket(bucket)
                .key("rules.json")
                .body(
                    json!([{"destination_name": "warehouse", "destination_arn": arn,
                            "enabled_events": enabled}])
                    .to_string()
                    .into_bytes()
                    .into(),
                )
                .send()
                .await
                .unwrap();
        }
    };
    put_rules(json!(["login"])).await;
    let router = RouterFunction::new(
        S3Rules::new(s3.clone(), bucket.clone(), "rules.json".into()),
        Destinations::new(aws_sdk_lambda::Client::new(&config), sqs.clone()),
        SqsDeadLetterQueue::new(sqs.clone(), router_dlq_url.clone()),
    );
    let records = stream_records(&kinesis, &stream).await;
    let (before, after) = records.split_at(records.len() / 2);
    let batch = |records: &[Value]| -> KinesisEvent {
        serde_json::from_value(json!({"Records": records})).unwrap()
    };
    let response = router.handle(batch(before)).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    // The rules change in S3 between two batches.
    put_rules(json!(["*"])).await;
    let response = router.handle(batch(after)).await.unwrap();
    assert!(response.batch_item_failures.is_empty());

    let folder = tempfile::tempdir().unwrap();
    let warehouse = folder.path().join("warehouse.jsonl");
    let connector_config = connector_config(
        &format!(
            "[destinations.warehouse]\nkind = \"jsonl\"\npath = {:?}\n",
            warehouse.display().to_string()
        ),
        folder.path(),
    );
    let connector = ConnectorFunction::new(
        &connector_config,
        "warehouse",
        Arc::new(SqsDeadLetterQueue::new(
            sqs.clone(),
            connector_dlq_url.clone(),
        )),
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let output = sqs
            .receive_message()
            .queue_url(&destination_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        if output.messages().is_empty() {
            break;
        }
        let event: SqsEvent = serde_json::from_value(json!({"Records": output
            .messages()
            .iter()
            .map(|m| json!({"messageId": m.message_id(), "receiptHandle": m.receipt_handle(),
                             "body": m.body(), "eventSource": "aws:sqs",
                             "attributes": {}, "messageAttributes": {}}))
            .collect::<Vec<_>>()}))
        .unwrap();
        let response = connector.handle_sqs(event, deadline).await;
        let failed: HashSet<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert!(failed.is_empty());
        for message in output.messages() {
            sqs.delete_message()
                .queue_url(&destination_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    let delivered: Vec<Value> = std::fs::read_to_string(&warehouse)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    // The first half by the old rules (logins only), the second by the new ones (everything).
    let all = ids(&archived);
    let got = ids(&delivered);
    assert!(got.is_subset(&all));
    let logins_everywhere = ids(&archived
        .iter()
        .filter(|e| e["name"] == "login")
        .cloned()
        .collect::<Vec<_>>());
    assert!(
        logins_everywhere.is_subset(&got),
        "every login went through either rule set"
    );
    assert!(
        delivered.iter().any(|e| e["name"] != "login"),
        "the new rules took effect"
    );
    assert!(
        got.len() < all.len(),
        "the old rules applied to the first batch (non-login events of it were not routed)"
    );
    // The poison record is in the router's DLQ, once.
    let dlq = sqs
        .receive_message()
        .queue_url(&router_dlq_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let poison: Vec<&str> = dlq.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(poison.len(), 1, "{poison:?}");
    assert!(poison[0].contains("poison_record"));

    // 5. A Lambda-ARN destination against moto's Lambda (without Docker, its Invoke answers
    //    202 for an asynchronous invoke): every event sent, nothing reported, nothing
    //    dead-lettered. What the request holds is checked against a stand-in in aws_handlers.
    let function_arn = moto_function(&moto, &unique("e2e-connector-fn"));
    s3.put_object()
        .bucket(&bucket)
        .key("rules.json")
        .body(
            json!([{"destination_name": "analytics", "destination_arn": function_arn,
                    "enabled_events": ["*"]}])
            .to_string()
            .into_bytes()
            .into(),
        )
        .send()
        .await
        .unwrap();
    let report = router.route(&batch(&records)).await.unwrap();
    assert!(report.failed_sequence_numbers.is_empty(), "{report:?}");
    assert_eq!(report.dead_lettered, 0, "{report:?}");
    assert_eq!(report.sent, report.events, "{report:?}");
    assert!(report.requests >= 1);
    delete_stream(&kinesis, &stream).await;
}

/// A function in moto's Lambda (moto configured not to need Docker; its IAM role created too),
/// made with boto3, which moto's server brings along.
fn moto_function(moto: &str, name: &str) -> String {
    let script = r##"
import io, json, sys, urllib.request, zipfile
import boto3
url, name = sys.argv[1], sys.argv[2]
request = urllib.request.Request(url + "/moto-api/config", method="POST",
    data=json.dumps({"lambda": {"use_docker": False}}).encode(),
    headers={"Content-Type": "application/json"})
urllib.request.urlopen(request).read()
kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="test",
          aws_secret_access_key="test")
role = boto3.client("iam", **kw).create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
     "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
code = io.BytesIO()
with zipfile.ZipFile(code, "w") as archive:
    archive.writestr("bootstrap", "exit 0")
function = boto3.client("lambda", **kw).create_function(FunctionName=name,
    Runtime="provided.al2023", Role=role, Handler="bootstrap", Code={"ZipFile": code.getvalue()})
print(function["FunctionArn"])
"##;
    let output = std::process::Command::new("python3")
        .args(["-c", script, moto, name])
        .output()
        .expect("python3 runs (scripts/start-moto.sh installs moto and boto3)");
    assert!(
        output.status.success(),
        "creating a function in moto: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}
