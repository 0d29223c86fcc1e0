//! A Kinesis test double on 127.0.0.1: `ListShards` and `PutRecords` of the Kinesis JSON
//! protocol (what `aws-sdk-kinesis` speaks), with per-shard limits that can be enforced, faults
//! that can be injected, and every accepted record and request kept for the test to check.

#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tributary_core::kpl;

/// One record the double accepted.
#[derive(Debug, Clone)]
pub struct Stored {
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
}

/// One `PutRecords` the double received.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    /// For each entry: the shard it maps to, and the error returned (`None`: put).
    pub entries: Vec<(String, Option<String>)>,
}

/// What an entry of a `PutRecords` is answered with, decided by the test.
pub type EntryFault = dyn Fn(&EntryInfo<'_>) -> Option<&'static str> + Send + Sync;

/// What a fault rule sees of an entry.
#[derive(Debug)]
pub struct EntryInfo<'a> {
    /// 0-based count of `PutRecords` requests received before this one.
    pub request: usize,
    /// The entry's index in its request.
    pub index: usize,
    pub shard_id: &'a str,
    pub partition_key: &'a str,
    pub data: &'a [u8],
    /// Time since the double started.
    pub elapsed: Duration,
}

struct Shard {
    id: String,
    start: u128,
    end: u128,
    closed: bool,
    records_tokens: f64,
    bytes_tokens: f64,
    refilled: Instant,
    next_sequence: u64,
}

struct Inner {
    shards: Vec<Shard>,
    enforce_limits: bool,
    entry_fault: Option<Arc<EntryFault>>,
    /// Answer whole requests with this error (`__type`, HTTP status) while set.
    request_fault: Option<(&'static str, u16)>,
    delay: Duration,
    stored: Vec<Stored>,
    requests: Vec<Request>,
    list_shards_calls: usize,
    started: Instant,
    keep_records: bool,
}

#[derive(Clone)]
pub struct KinesisDouble {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

fn even_shards(count: usize, first_index: usize) -> Vec<Shard> {
    let width = u128::MAX / count as u128;
    (0..count)
        .map(|index| {
            let start = width * index as u128;
            let end = if index + 1 == count {
                u128::MAX
            } else {
                start + width - 1
            };
            Shard {
                id: format!("shardId-{:012}", first_index + index),
                start,
                end,
                closed: false,
                records_tokens: 1000.0,
                bytes_tokens: 1_048_576.0,
                refilled: Instant::now(),
                next_sequence: 1,
            }
        })
        .collect()
}

impl KinesisDouble {
    /// Starts a double of a stream with `shards` shards of even hash key ranges.
    pub async fn start(shards: usize) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            shards: even_shards(shards, 0),
            enforce_limits: false,
            entry_fault: None,
            request_fault: None,
            delay: Duration::ZERO,
            stored: Vec::new(),
            requests: Vec::new(),
            list_shards_calls: 0,
            started: Instant::now(),
            keep_records: true,
        }));
        // PutRecords bodies reach 5 MiB of data, about 7 MiB as base64 JSON: above axum's
        // default limit of 2 MiB.
        let app = Router::new()
            .route("/", post(handle))
            .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, inner }
    }

    fn with<T>(&self, action: impl FnOnce(&mut Inner) -> T) -> T {
        action(&mut self.inner.lock().unwrap())
    }

    /// Refuse what goes over Kinesis's per-shard limits (1000 records/s, 1 MiB/s, one second
    /// of burst) with `ProvisionedThroughputExceededException`, as Kinesis does.
    pub fn enforce_limits(&self, enforce: bool) {
        self.with(|inner| inner.enforce_limits = enforce);
    }

    /// Keep (the default) or forget what was put and the request log (for long benchmarks).
    pub fn keep_records(&self, keep: bool) {
        self.with(|inner| inner.keep_records = keep);
    }

    pub fn set_entry_fault(
        &self,
        fault: impl Fn(&EntryInfo<'_>) -> Option<&'static str> + Send + Sync + 'static,
    ) {
        self.with(|inner| inner.entry_fault = Some(Arc::new(fault)));
    }

    pub fn clear_faults(&self) {
        self.with(|inner| {
            inner.entry_fault = None;
            inner.request_fault = None;
        });
    }

    pub fn set_request_fault(&self, error_type: &'static str, status: u16) {
        self.with(|inner| inner.request_fault = Some((error_type, status)));
    }

    pub fn set_delay(&self, delay: Duration) {
        self.with(|inner| inner.delay = delay);
    }

    /// Splits every shard in two (the old ones are closed), as `UpdateShardCount` would.
    pub fn reshard(&self, count: usize) {
        self.with(|inner| {
            let first = inner.shards.len();
            for shard in &mut inner.shards {
                shard.closed = true;
            }
            inner.shards.extend(even_shards(count, first));
        });
    }

    pub fn stored(&self) -> Vec<Stored> {
        self.with(|inner| inner.stored.clone())
    }

    pub fn requests(&self) -> Vec<Request> {
        self.with(|inner| inner.requests.clone())
    }

    pub fn list_shards_calls(&self) -> usize {
        self.with(|inner| inner.list_shards_calls)
    }

    /// The id of the open shard `hash` maps to.
    pub fn shard_of(&self, hash: u128) -> String {
        self.with(|inner| {
            inner
                .shards
                .iter()
                .find(|shard| !shard.closed && shard.start <= hash && hash <= shard.end)
                .map(|shard| shard.id.clone())
                .unwrap()
        })
    }
}

fn error(status: u16, error_type: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/x-amz-json-1.1")],
        json!({"__type": error_type, "message": message}).to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response()
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let delay = inner.lock().unwrap().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut inner = inner.lock().unwrap();
    match target.as_str() {
        "Kinesis_20131202.ListShards" => {
            inner.list_shards_calls += 1;
            let shards: Vec<Value> = inner
                .shards
                .iter()
                .map(|shard| {
                    let mut range = json!({"StartingSequenceNumber": "1"});
                    if shard.closed {
                        range["EndingSequenceNumber"] = json!("2");
                    }
                    json!({
                        "ShardId": shard.id,
                        "HashKeyRange": {
                            "StartingHashKey": shard.start.to_string(),
                            "EndingHashKey": shard.end.to_string(),
                        },
                        "SequenceNumberRange": range,
                    })
                })
                .collect();
            ok(json!({ "Shards": shards }))
        }
        "Kinesis_20131202.PutRecords" => put_records(&mut inner, &request),
        other => error(400, "UnknownOperationException", other),
    }
}

fn put_records(inner: &mut Inner, request: &Value) -> Response {
    if let Some((error_type, status)) = inner.request_fault {
        return error(status, error_type, "injected");
    }
    let entries = request["Records"].as_array().cloned().unwrap_or_default();
    let number = inner.requests.len();
    let now = Instant::now();
    let elapsed = now - inner.started;
    let fault = inner.entry_fault.clone();
    let mut results = Vec::with_capacity(entries.len());
    let mut log = Vec::with_capacity(entries.len());
    let mut failed = 0;
    for (index, entry) in entries.iter().enumerate() {
        let partition_key = entry["PartitionKey"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let explicit_hash_key = entry["ExplicitHashKey"].as_str().map(str::to_owned);
        let data = STANDARD
            .decode(entry["Data"].as_str().unwrap_or_default())
            .unwrap_or_default();
        let hash = explicit_hash_key
            .as_deref()
            .and_then(kpl::parse_explicit_hash_key)
            .unwrap_or_else(|| kpl::partition_key_hash(&partition_key));
        let enforce = inner.enforce_limits;
        let shard = inner
            .shards
            .iter_mut()
            .find(|shard| !shard.closed && shard.start <= hash && hash <= shard.end)
            .unwrap();
        let shard_id = shard.id.clone();
        let info = EntryInfo {
            request: number,
            index,
            shard_id: &shard_id,
            partition_key: &partition_key,
            data: &data,
            elapsed,
        };
        let mut code = fault.as_ref().and_then(|fault| fault(&info));
        if code.is_none() && enforce {
            let seconds = now.duration_since(shard.refilled).as_secs_f64();
            shard.refilled = now;
            shard.records_tokens = (shard.records_tokens + seconds * 1000.0).min(1000.0);
            shard.bytes_tokens = (shard.bytes_tokens + seconds * 1_048_576.0).min(1_048_576.0);
            let size = (data.len() + partition_key.len()) as f64;
            if shard.records_tokens >= 1.0 && shard.bytes_tokens >= size {
                shard.records_tokens -= 1.0;
                shard.bytes_tokens -= size;
            } else {
                code = Some("ProvisionedThroughputExceededException");
            }
        }
        match code {
            Some(code) => {
                failed += 1;
                results.push(json!({"ErrorCode": code, "ErrorMessage": "injected by the double"}));
            }
            None => {
                let sequence_number = format!("{:020}{:012}", shard.next_sequence, number);
                shard.next_sequence += 1;
                results.push(json!({"ShardId": shard_id, "SequenceNumber": sequence_number}));
                if !inner.keep_records {
                    continue;
                }
                inner.stored.push(Stored {
                    shard_id: shard_id.clone(),
                    sequence_number,
                    partition_key,
                    explicit_hash_key,
                    data,
                });
            }
        }
        log.push((shard_id, code.map(str::to_owned)));
    }
    if inner.keep_records {
        inner.requests.push(Request {
            at: now,
            entries: log,
        });
    }
    ok(json!({"FailedRecordCount": failed, "Records": results}))
}

/// An AWS configuration that points at `url` with fake credentials (what the tests use for the
/// double and for moto).
pub async fn sdk_config(url: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}
