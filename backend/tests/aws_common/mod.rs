//! Shared helpers of the AWS-mode tests: the moto server's address, SDK clients for it, unique
//! resource names (moto is shared by every test run), the fixtures, and the real `tributary`
//! binary run against moto.

#![allow(dead_code, unreachable_pub, clippy::print_stderr)]

use std::path::Path;
use std::process::{Command, Output};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;

/// The `tributary` binary of this build.
pub const BINARY: &str = env!("CARGO_BIN_EXE_tributary");

/// moto's address from `TRIBUTARY_TEST_MOTO_URL`; `None` (the test skips) only with
/// `TRIBUTARY_TEST_SKIP_EXTERNAL=1` outside CI, else a panic saying how to start it.
pub fn moto_url() -> Option<String> {
    match std::env::var("TRIBUTARY_TEST_MOTO_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("TRIBUTARY_TEST_SKIP_EXTERNAL").is_ok_and(|v| v == "1")
                && std::env::var_os("CI").is_none()
            {
                eprintln!("skipped: TRIBUTARY_TEST_MOTO_URL is not set");
                return None;
            }
            panic!(
                "TRIBUTARY_TEST_MOTO_URL is not set: run `eval \"$(scripts/start-moto.sh)\"` first \
                 (scripts/test.sh does), or TRIBUTARY_TEST_SKIP_EXTERNAL=1 to skip outside CI"
            );
        }
    }
}

/// An SDK configuration for moto at `endpoint` (us-east-1, test credentials).
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await
}

/// An S3 client with path-style addressing (moto has no bucket host names).
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}

/// `prefix` made unique to this process and moment (streams, queues and buckets in the shared
/// moto server).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000
    )
}

/// An SQS queue made for a test.
pub struct Queue {
    pub url: String,
    pub arn: String,
}

/// A new queue named `unique(prefix)`, with its URL and ARN.
pub async fn create_queue(sqs: &aws_sdk_sqs::Client, prefix: &str) -> Queue {
    let url = sqs
        .create_queue()
        .queue_name(unique(prefix))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let arn = queue_attribute(sqs, &url, aws_sdk_sqs::types::QueueAttributeName::QueueArn).await;
    Queue { url, arn }
}

/// One attribute of a queue.
pub async fn queue_attribute(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    name: aws_sdk_sqs::types::QueueAttributeName,
) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(name.clone())
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&name]
        .clone()
}

/// A new Kinesis stream named `unique(prefix)` with `shards` shards; its name.
pub async fn create_stream(kinesis: &aws_sdk_kinesis::Client, prefix: &str, shards: i32) -> String {
    let stream = unique(prefix);
    kinesis
        .create_stream()
        .stream_name(&stream)
        .shard_count(shards)
        .send()
        .await
        .unwrap();
    stream
}

/// Every record of the stream from its start, per shard: `(shard id, records in order)`.
pub async fn read_stream(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Vec<(String, Vec<aws_sdk_kinesis::types::Record>)> {
    let shards = kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap();
    let mut per_shard = Vec::new();
    for shard in shards.shards() {
        let mut records = Vec::new();
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator()
            .map(str::to_owned);
        while let Some(current) = iterator.take() {
            let output = kinesis
                .get_records()
                .shard_iterator(current)
                .send()
                .await
                .unwrap();
            if output.records().is_empty() {
                break;
            }
            records.extend_from_slice(output.records());
            iterator = output.next_shard_iterator().map(str::to_owned);
        }
        per_shard.push((shard.shard_id().to_owned(), records));
    }
    per_shard
}

/// Deletes a stream: moto is shared and keeps every record in memory.
pub async fn delete_stream(kinesis: &aws_sdk_kinesis::Client, stream: &str) {
    kinesis
        .delete_stream()
        .stream_name(stream)
        .send()
        .await
        .unwrap();
}

/// The envelopes a stored record carries: inflated when gzip (the ingest's default), then
/// de-aggregated.
pub fn envelopes_in(record: &aws_sdk_kinesis::types::Record) -> Vec<serde_json::Value> {
    let data = tributary_server::kinesis::decompress_record(record.data().as_ref()).unwrap();
    tributary_core::kpl::deaggregate(record.partition_key(), None, &data)
        .unwrap()
        .into_iter()
        .map(|user| serde_json::from_slice(user.data).unwrap())
        .collect()
}

/// An API Gateway (REST) request POSTing `{"batch": batch}` to `/v1/batch` with `write_key`.
pub fn batch_request(batch: &[serde_json::Value], write_key: &str) -> serde_json::Value {
    serde_json::json!({
        "resource": "/v1/batch", "path": "/v1/batch", "httpMethod": "POST",
        "headers": {"Authorization": format!("Bearer {write_key}")},
        "requestContext": {"stage": "v1", "httpMethod": "POST", "resourcePath": "/v1/batch",
                           "identity": {"sourceIp": "203.0.113.9"}},
        "body": serde_json::json!({"batch": batch}).to_string(), "isBase64Encoded": false
    })
}

/// Calls the ingest function as Lambda does with an API Gateway `request`; the response's JSON.
pub async fn call_ingest(router: &axum::Router, request: &serde_json::Value) -> serde_json::Value {
    use tower::ServiceExt;
    let request: lambda_http::request::LambdaRequest =
        serde_json::from_value(request.clone()).unwrap();
    let service = tributary_backend::aws::ingest::lambda_service(router.clone());
    let response = lambda_http::Adapter::from(service)
        .oneshot(lambda_runtime::LambdaEvent::new(
            request,
            lambda_runtime::Context::default(),
        ))
        .await
        .unwrap();
    serde_json::to_value(response).unwrap()
}

/// A connector function's configuration, as `TRIBUTARY_CONNECTOR_CONFIG` would give it
/// (relative paths from `base`).
pub fn connector_config(text: &str, base: &Path) -> tributary_backend::config::Config {
    tributary_backend::config::Config::parse(
        text,
        tributary_backend::config::ConfigSource::Environment {
            variable: "TRIBUTARY_CONNECTOR_CONFIG".into(),
            base: base.to_path_buf(),
        },
    )
    .unwrap()
}

/// A fixture of `backend/tests/data/`.
pub fn data(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// `tributary ARGS` in `folder`, against moto (its output is echoed to stderr).
pub fn tributary(moto: &str, folder: &Path, args: &[&str]) -> Output {
    let output = Command::new(BINARY)
        .args(args)
        .current_dir(folder)
        .env("AWS_ENDPOINT_URL", moto)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("TRIBUTARY_S3_PATH_STYLE", "1")
        .output()
        .unwrap();
    eprintln!(
        "$ tributary {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
