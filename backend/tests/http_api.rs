//! Every status code and error body of the HTTP API, against the real binary.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Server, WRITE_KEY, batch, config_with, eventually, post, sample_rules};
use serde_json::{Value, json};

fn event(name: &str, id: &str) -> Value {
    json!({"id": id, "name": name, "data": {"n": 1}})
}

async fn body(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_batches_and_rejected_events_by_index() {
    let server = Server::start(&config_with(""), &sample_rules());
    let response = post(
        &server.url("/v1/batch"),
        batch(&[
            event("login", "e-0"),
            json!({"id": "e-1", "name": "", "data": {}}),
            event("search", "e-2"),
            json!({"id": "e-3", "name": "page_view", "data": [1]}),
            json!({"id": "e-4", "name": "logout", "data": {"blob": "x".repeat(33 * 1024)}}),
            event("registration", "e-5"),
        ]),
    )
    .await;
    assert_eq!(response.status(), 200);
    let answer = body(response).await;
    assert_eq!(answer["accepted"], 3);
    let rejected = answer["rejected"].as_array().unwrap();
    let indexes: Vec<u64> = rejected
        .iter()
        .map(|entry| entry["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [1, 3, 4]);
    assert_eq!(rejected[0]["error"], "name: must not be empty");
    assert!(
        rejected[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("data: invalid type"),
        "{answer}"
    );
    assert!(
        rejected[2]["error"]
            .as_str()
            .unwrap()
            .contains("over the limit of 32768 bytes"),
        "{answer}"
    );

    eventually(
        Duration::from_secs(10),
        "valid neighbours in the warehouse",
        || server.warehouse_ids().len() == 3,
    )
    .await;
    let mut ids = server.warehouse_ids();
    ids.sort();
    assert_eq!(ids, ["e-0", "e-2", "e-5"]);

    // A batch whose events are all invalid is still a 200.
    let response = post(
        &server.url("/v1/batch"),
        batch(&[json!({"name": "$nope", "data": {}})]),
    )
    .await;
    assert_eq!(response.status(), 200);
    let answer = body(response).await;
    assert_eq!(answer["accepted"], 0);
    assert_eq!(answer["rejected"][0]["index"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_400_with_line_and_column() {
    let server = Server::start(&config_with(""), &sample_rules());
    let response = post(
        &server.url("/v1/batch"),
        "{\"batch\": [\n  {\"name\": \"a\",}\n]}".into(),
    )
    .await;
    assert_eq!(response.status(), 400);
    let answer = body(response).await;
    assert_error(&answer, "invalid_json");
    assert_eq!(
        (
            answer["error"]["line"].as_u64(),
            answer["error"]["column"].as_u64()
        ),
        (Some(2), Some(16)),
        "{answer}"
    );

    let response = post(&server.url("/v1/batch"), r#"{"events": []}"#.into()).await;
    assert_eq!(response.status(), 400);
    assert_error(&body(response).await, "invalid_body");

    let response = post(
        &server.url("/v1/batch"),
        r#"{"batch": [], "sent_at": "noon"}"#.into(),
    )
    .await;
    assert_eq!(response.status(), 400);
    assert_error(&body(response).await, "invalid_body");

    let response = reqwest::Client::new()
        .post(server.url("/v1/batch"))
        .bearer_auth(WRITE_KEY)
        .body(vec![b'{', 0xff, 0xfe, b'}'])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "invalid UTF-8");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_unknown_keys_are_401() {
    let server = Server::start(&config_with(""), &sample_rules());
    let client = reqwest::Client::new();
    let body_text = batch(&[event("login", "k-1")]);
    let response = client
        .post(server.url("/v1/batch"))
        .body(body_text.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_error(&body(response).await, "unauthorized");
    let response = client
        .post(server.url("/v1/batch"))
        .bearer_auth("wrong")
        .body(body_text.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = client
        .post(server.url("/v1/batch"))
        .basic_auth("wrong", Some(""))
        .body(body_text.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Basic with the key as user works.
    let response = client
        .post(server.url("/v1/batch"))
        .basic_auth(WRITE_KEY, Some(""))
        .body(body_text)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_413_and_nothing_is_accepted() {
    let server = Server::start(&config_with(""), &sample_rules());
    let events: Vec<Value> = (0..501)
        .map(|index| event("login", &format!("many-{index}")))
        .collect();
    let response = post(&server.url("/v1/batch"), batch(&events)).await;
    assert_eq!(response.status(), 413);
    assert_error(&body(response).await, "too_many_events");

    // 20 events of 30 KiB: each is valid alone, the body is over 512 KiB.
    let events: Vec<Value> = (0..20)
        .map(|index| json!({"id": format!("big-{index}"), "name": "login", "data": {"blob": "x".repeat(30_000)}}))
        .collect();
    let response = post(&server.url("/v1/batch"), batch(&events)).await;
    assert_eq!(response.status(), 413);
    assert_error(&body(response).await, "payload_too_large");

    // The same limit applies after decompression: a small gzip body that expands past it.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(batch(&events).as_bytes()).unwrap();
    let compressed = encoder.finish().unwrap();
    assert!(compressed.len() < 100_000);
    let response = reqwest::Client::new()
        .post(server.url("/v1/batch"))
        .bearer_auth(WRITE_KEY)
        .header("content-encoding", "gzip")
        .body(compressed)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        server.warehouse_ids().is_empty(),
        "nothing of a 413 is accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_content_types_and_encodings_are_415() {
    let server = Server::start(&config_with(""), &sample_rules());
    let client = reqwest::Client::new();
    for (header, value) in [
        ("content-type", "application/x-www-form-urlencoded"),
        ("content-encoding", "br"),
    ] {
        let response = client
            .post(server.url("/v1/batch"))
            .bearer_auth(WRITE_KEY)
            .header(header, value)
            .body(batch(&[event("login", "t-1")]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 415, "{header}: {value}");
        assert_error(&body(response).await, "unsupported_media_type");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacons_gzip_single_events_and_missing_content_type_are_accepted() {
    let server = Server::start(&config_with(""), &sample_rules());
    let client = reqwest::Client::new();
    // A beacon: text/plain, no Authorization, write_key in the body.
    let beacon = json!({"batch": [event("page_view", "b-1")], "write_key": WRITE_KEY}).to_string();
    let response = client
        .post(server.url("/v1/batch"))
        .header("content-type", "text/plain;charset=UTF-8")
        .body(beacon)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let wrong_key = json!({"batch": [event("page_view", "b-2")], "write_key": "wrong"}).to_string();
    let response = client
        .post(server.url("/v1/batch"))
        .header("content-type", "text/plain")
        .body(wrong_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // gzip.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(batch(&[event("search", "g-1")]).as_bytes())
        .unwrap();
    let response = client
        .post(server.url("/v1/batch"))
        .bearer_auth(WRITE_KEY)
        .header("content-encoding", "gzip")
        .body(encoder.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(body(response).await["accepted"], 1);

    // One event to /v1/event, no Content-Type (read as JSON), key in the body.
    let single =
        json!({"id": "s-1", "name": "login", "data": {}, "write_key": WRITE_KEY}).to_string();
    let response = client
        .post(server.url("/v1/event"))
        .body(single)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    eventually(
        Duration::from_secs(10),
        "all three in the warehouse",
        || server.warehouse_ids().len() == 3,
    )
    .await;
    eventually(Duration::from_secs(10), "all three archived", || {
        server.jsonl("data/archive.jsonl").len() == 3
    })
    .await;
    let archived = server.jsonl("data/archive.jsonl");
    let single = archived.iter().find(|event| event["id"] == "s-1").unwrap();
    assert!(single.get("write_key").is_none(), "the key is not stored");
    assert!(single["received_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_accepted_and_stored_once() {
    let server = Server::start(&config_with(""), &sample_rules());
    for _ in 0..3 {
        let response = post(
            &server.url("/v1/batch"),
            batch(&[event("login", "dup-1"), event("login", "dup-1")]),
        )
        .await;
        assert_eq!(body(response).await["accepted"], 2);
    }
    eventually(Duration::from_secs(10), "delivered", || {
        server.jsonl("data/archive.jsonl").len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.jsonl("data/archive.jsonl").len(), 1, "stored once");
    let metrics = server.metrics().await;
    assert_eq!(metrics["tributary_events_accepted_total"], 1.0);
    assert_eq!(metrics["tributary_events_deduplicated_total"], 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_limit_gets_429_with_retry_after() {
    let config = config_with("").replace(
        "write_keys = [\"test-key\"]",
        "write_keys = [\"test-key\"]\nrate_limit_per_key = 50",
    );
    let server = Server::start(&config, &sample_rules());
    let events: Vec<Value> = (0..100)
        .map(|index| event("login", &format!("r-{index}")))
        .collect();
    let first = post(&server.url("/v1/batch"), batch(&events)).await;
    assert_eq!(first.status(), 200, "a full bucket may go into debt");
    let second = post(&server.url("/v1/batch"), batch(&[event("login", "r-x")])).await;
    assert_eq!(second.status(), 429);
    let retry_after: u64 = second.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry_after), "{retry_after}");
    assert_error(&body(second).await, "rate_limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_is_503_with_retry_after_and_the_server_recovers() {
    let config = config_with("").replace(
        "data_dir = \"data\"",
        "data_dir = \"data\"\nmax_log_bytes = 262144",
    );
    let server = Server::start(&config, &sample_rules());
    let mut saw_503 = false;
    for round in 0..200 {
        let events: Vec<Value> = (0..50)
            .map(|index| json!({"id": format!("fill-{round}-{index}"), "name": "email_open", "data": {"pad": "y".repeat(2_000)}}))
            .collect();
        let response = post(&server.url("/v1/batch"), batch(&events)).await;
        if response.status() == 503 {
            assert!(response.headers().contains_key("retry-after"));
            assert_error(&body(response).await, "unavailable");
            saw_503 = true;
            break;
        }
        assert_eq!(response.status(), 200);
    }
    assert!(saw_503, "the log never filled");
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200, "the server keeps serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_is_answered_for_allowed_origins() {
    let config = config_with("").replace(
        "write_keys = [\"test-key\"]",
        "write_keys = [\"test-key\"]\nallowed_origins = [\"https://app.example\"]",
    );
    let server = Server::start(&config, &sample_rules());
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, server.url("/v1/batch"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_ascii_uppercase();
    assert!(methods.contains("POST"), "{methods}");
    let other = preflight("https://evil.example").await.unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_answer() {
    let server = Server::start(&config_with(""), &sample_rules());
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(body(health).await["status"], "ok");
    let metrics = server.metrics().await;
    assert_eq!(
        metrics["tributary_destination_delivered_total{destination=\"archive\"}"],
        0.0
    );
    let page = reqwest::get(server.url("/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("data-metric=\"tributary_events_accepted_total\""));
}
