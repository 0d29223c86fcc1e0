//! A failing webhook: retried the configured number of times with delays inside the jitter
//! bounds, then the DLQ; `dlq redrive` delivers once it recovers, and so does
//! `dlq backup --purge` followed by `dlq redrive --from`. Every request is signed.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::{Server, batch, config_with, eventually, post as post_events, text};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const SECRET: &str = "webhook-test-secret";

#[derive(Clone, Copy, Debug)]
enum Reply {
    Status(u16),
    RetryAfter(u16, u64),
    Hang,
}

#[derive(Clone, Debug)]
struct Request {
    at: Instant,
    body: Vec<u8>,
    idempotency_key: String,
    timestamp: String,
    signature: String,
}

#[derive(Default)]
struct Script {
    replies: VecDeque<Reply>,
    otherwise: Option<Reply>,
    requests: Vec<Request>,
}

type Shared = Arc<Mutex<Script>>;

async fn receive(State(script): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let reply = {
        let mut script = script.lock().unwrap();
        script.requests.push(Request {
            at: Instant::now(),
            body: body.to_vec(),
            idempotency_key: header("idempotency-key"),
            timestamp: header("x-tributary-timestamp"),
            signature: header("x-tributary-signature"),
        });
        let otherwise = script.otherwise.unwrap_or(Reply::Status(200));
        script.replies.pop_front().unwrap_or(otherwise)
    };
    match reply {
        Reply::Status(status) => StatusCode::from_u16(status).unwrap().into_response(),
        Reply::RetryAfter(status, seconds) => (
            StatusCode::from_u16(status).unwrap(),
            [("retry-after", seconds.to_string())],
        )
            .into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::OK.into_response()
        }
    }
}

async fn start_webhook(replies: Vec<Reply>) -> (String, Shared) {
    let script: Shared = Arc::new(Mutex::new(Script {
        replies: replies.into(),
        ..Script::default()
    }));
    let app = Router::new()
        .route("/events", post(receive))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, script)
}

/// Verifies the signature independently of the crate's own code.
fn signature_is_valid(request: &Request) -> bool {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(request.timestamp.as_bytes());
    mac.update(b".");
    mac.update(&request.body);
    request.signature == format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn ids(request: &Request) -> Vec<String> {
    let events: Vec<Value> = serde_json::from_slice(&request.body).unwrap();
    events
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect()
}

fn requests(script: &Shared) -> Vec<Request> {
    script.lock().unwrap().requests.clone()
}

const TOLERANCE: Duration = Duration::from_millis(250);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_within_jitter_bounds_then_dead_letters_then_redrives() {
    let (url, script) = start_webhook(vec![
        Reply::Status(500),
        Reply::RetryAfter(429, 1),
        Reply::Hang,
        Reply::Status(503),
        Reply::Status(500),
    ])
    .await;
    let config = config_with(&format!(
        r#"
[destinations.hooks]
kind = "webhook"
url = "{url}"
secret_env = "HOOKS_SECRET"
batch_size = 10
timeout_ms = 300
retry = {{ max_attempts = 5, base_delay_ms = 100, max_delay_ms = 2000 }}
"#
    ));
    let rules = r#"[{"destination_name": "hooks", "destination_arn": "local", "enabled_events": ["signup"]}]"#;
    let server = Server::start_with_env(&config, rules, &[("HOOKS_SECRET", SECRET)]);

    let events: Vec<Value> = (1..=3)
        .map(|n| json!({"id": format!("w-{n}"), "name": "signup", "data": {"n": n}}))
        .collect();
    assert_eq!(
        post_events(&server.url("/v1/batch"), batch(&events))
            .await
            .status(),
        200
    );

    eventually(Duration::from_secs(15), "the batch dead-lettered", || {
        String::from_utf8_lossy(&server.cli(&["dlq", "list"]).stdout).contains("hooks")
    })
    .await;
    let attempts = requests(&script);
    assert_eq!(attempts.len(), 5, "max_attempts = 5");
    let expected_key = hex::encode(Sha256::digest(b"w-1,w-2,w-3"));
    for request in &attempts {
        assert_eq!(
            ids(request),
            ["w-1", "w-2", "w-3"],
            "the same batch every time"
        );
        assert_eq!(
            request.idempotency_key, expected_key,
            "stable across retries"
        );
        assert!(
            signature_is_valid(request),
            "signature verifies with the secret"
        );
    }
    let gaps: Vec<Duration> = attempts
        .windows(2)
        .map(|pair| pair[1].at - pair[0].at)
        .collect();
    // Full jitter: the wait after the n-th failure is at most min(2000, 100 × 2^(n−1)) ms.
    assert!(
        gaps[0] <= Duration::from_millis(100) + TOLERANCE,
        "after the 500: {gaps:?}"
    );
    assert!(
        gaps[1] >= Duration::from_millis(1000),
        "Retry-After: 1 honoured: {gaps:?}"
    );
    assert!(
        gaps[1] <= Duration::from_millis(1000) + TOLERANCE,
        "{gaps:?}"
    );
    assert!(
        gaps[2] >= Duration::from_millis(300),
        "the 300 ms timeout first: {gaps:?}"
    );
    assert!(
        gaps[2] <= Duration::from_millis(300 + 400) + TOLERANCE,
        "then at most 400 ms: {gaps:?}"
    );
    assert!(
        gaps[3] <= Duration::from_millis(800) + TOLERANCE,
        "after the 503: {gaps:?}"
    );

    let listing = text(&server.cli(&["dlq", "list"]));
    assert!(
        listing.contains("hooks") && listing.contains("retryable") && listing.contains("500"),
        "{listing}"
    );
    let metrics = server.metrics().await;
    assert_eq!(
        metrics["tributary_destination_dead_lettered_total{destination=\"hooks\"}"],
        3.0
    );
    assert_eq!(
        metrics["tributary_destination_retried_total{destination=\"hooks\"}"],
        12.0
    );

    // The webhook recovers. A dry run changes nothing; a redrive delivers.
    script.lock().unwrap().otherwise = Some(Reply::Status(200));
    let dry_run = server.cli(&["dlq", "redrive", "--dry-run"]);
    assert!(dry_run.status.success(), "{}", text(&dry_run));
    assert!(
        text(&dry_run).contains("would redrive 3 events to hooks"),
        "{}",
        text(&dry_run)
    );
    assert_eq!(requests(&script).len(), 5);
    let redrive = server.cli(&["dlq", "redrive"]);
    assert!(redrive.status.success(), "{}", text(&redrive));
    let after = requests(&script);
    assert_eq!(after.len(), 6);
    assert_eq!(ids(&after[5]), ["w-1", "w-2", "w-3"]);
    assert_eq!(
        after[5].idempotency_key, expected_key,
        "stable across redrives"
    );
    assert!(signature_is_valid(&after[5]));
    assert!(text(&server.cli(&["dlq", "list"])).contains("empty"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_with_purge_then_redrive_from_the_file_delivers() {
    let (url, script) = start_webhook(vec![Reply::Status(400)]).await;
    let config = config_with(&format!(
        "\n[destinations.hooks]\nkind = \"webhook\"\nurl = \"{url}\"\nsecret_env = \"HOOKS_SECRET\"\n"
    ));
    let rules =
        r#"[{"destination_name": "hooks", "destination_arn": "local", "enabled_events": ["*"]}]"#;
    let server = Server::start_with_env(&config, rules, &[("HOOKS_SECRET", SECRET)]);
    let events = [
        json!({"id": "p-1", "name": "signup", "data": {}}),
        json!({"id": "p-2", "name": "signup", "data": {}}),
    ];
    assert_eq!(
        post_events(&server.url("/v1/batch"), batch(&events))
            .await
            .status(),
        200
    );
    eventually(
        Duration::from_secs(10),
        "the 400 dead-lettered at once",
        || text(&server.cli(&["dlq", "list"])).contains("permanent"),
    )
    .await;
    assert_eq!(
        requests(&script).len(),
        1,
        "a permanent failure is not retried"
    );

    let backup = server.cli(&["dlq", "backup", "--out", "backup.jsonl", "--purge"]);
    assert!(backup.status.success(), "{}", text(&backup));
    assert!(
        text(&server.cli(&["dlq", "list"])).contains("empty"),
        "purged"
    );
    let line: Value = serde_json::from_str(
        std::fs::read_to_string(server.path("backup.jsonl"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert_eq!(
        line["attributes"]["destination"],
        json!({"DataType": "String", "StringValue": "hooks"})
    );
    assert_eq!(
        line["attributes"]["error_class"]["StringValue"],
        "permanent"
    );
    assert_eq!(
        line["attributes"]["attempts"],
        json!({"DataType": "Number", "StringValue": "1"})
    );
    let message: Value = serde_json::from_str(line["body"].as_str().unwrap()).unwrap();
    assert_eq!(message["v"], 1);
    assert_eq!(message["error"]["status"], 400);
    assert_eq!(message["events"].as_array().unwrap().len(), 2);

    let redrive = server.cli(&["dlq", "redrive", "--from", "backup.jsonl"]);
    assert!(redrive.status.success(), "{}", text(&redrive));
    let all = requests(&script);
    assert_eq!(all.len(), 2);
    assert_eq!(ids(&all[1]), ["p-1", "p-2"]);
    assert!(signature_is_valid(&all[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_that_fails_again_keeps_the_message_with_attempts_raised() {
    let (url, script) = start_webhook(vec![Reply::Status(422)]).await;
    script.lock().unwrap().otherwise = Some(Reply::Status(503));
    let config = config_with(&format!(
        "\n[destinations.hooks]\nkind = \"webhook\"\nurl = \"{url}\"\n"
    ));
    let rules =
        r#"[{"destination_name": "hooks", "destination_arn": "local", "enabled_events": ["*"]}]"#;
    let server = Server::start(&config, rules);
    let events = [json!({"id": "f-1", "name": "signup", "data": {}})];
    assert_eq!(
        post_events(&server.url("/v1/batch"), batch(&events))
            .await
            .status(),
        200
    );
    eventually(Duration::from_secs(10), "dead-lettered", || {
        text(&server.cli(&["dlq", "list"])).contains("hooks")
    })
    .await;
    let redrive = server.cli(&["dlq", "redrive"]);
    assert!(!redrive.status.success(), "a failed redrive exits non-zero");
    let listing = text(&server.cli(&["dlq", "list"]));
    assert!(listing.contains("503"), "{listing}");
    let row = listing.lines().find(|line| line.contains("hooks")).unwrap();
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(columns[3], "2", "attempts raised: {row}");
    assert!(
        requests(&script)
            .iter()
            .all(|request| request.signature.is_empty()),
        "no secret, no signature"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_variable_that_is_not_set_is_a_startup_error() {
    let folder = tempfile::tempdir().unwrap();
    let config = config_with(
        "\n[destinations.hooks]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\nsecret_env = \"UNSET_TRIBUTARY_SECRET\"\n",
    );
    std::fs::write(folder.path().join("tributary.toml"), config).unwrap();
    std::fs::write(folder.path().join("rules.json"), common::sample_rules()).unwrap();
    let output = std::process::Command::new(common::BINARY)
        .args(["serve", "--config", "tributary.toml"])
        .current_dir(folder.path())
        .env_remove("UNSET_TRIBUTARY_SECRET")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        text(&output).contains("UNSET_TRIBUTARY_SECRET, which is not set"),
        "{}",
        text(&output)
    );
}
