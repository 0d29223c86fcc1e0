//! The ingest's security rules against a real `tributary serve`: the rate limit is per key
//! (`429` with `Retry-After` for the key over it, others unaffected); CORS answers only the
//! allowed origins, on preflights and on the requests themselves; unknown keys are `401` in
//! every place a key can be given. (Keys are compared in constant time with `subtle`; the admin
//! token off loopback is `ops::tests` and `local::tests`; secrets in files are
//! `secrets_never_logged.rs`.)

mod common;

use common::{Server, batch, config_with, sample_rules};
use serde_json::{Value, json};

fn events(prefix: &str, count: usize) -> String {
    let events: Vec<Value> = (0..count)
        .map(|n| json!({"id": format!("{prefix}-{n}"), "name": "login", "data": {}}))
        .collect();
    batch(&events)
}

async fn send(server: &Server, key: &str, body: String) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url("/v1/batch"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_is_per_key() {
    let config = config_with("").replace(
        "write_keys = [\"test-key\"]",
        "write_keys = [\"key-a\", \"key-b\"]\nrate_limit_per_key = 20",
    );
    let server = Server::start(&config, &sample_rules());
    // A full bucket may go into debt: 40 events at 20/s leave key-a 2 s to repay.
    assert_eq!(send(&server, "key-a", events("a0", 40)).await.status(), 200);
    let limited = send(&server, "key-a", events("a1", 1)).await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry_after), "{retry_after}");
    let body: Value = serde_json::from_str(&limited.text().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // The other key has its own bucket.
    assert_eq!(send(&server, "key-b", events("b0", 20)).await.status(), 200);
    // Nothing of the refused request was stored; after the wait the key sends again.
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    assert_eq!(send(&server, "key-a", events("a2", 1)).await.status(), 200);
    let metrics = server.metrics().await;
    assert_eq!(metrics["tributary_events_accepted_total"], 61.0);
    println!(
        "security: rate limit 20/s per key: key-a 40 accepted (into debt), then 429 (Retry-After {retry_after}), key-b 20 accepted meanwhile, key-a accepted again after the wait"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_only_allowed_origins() {
    let config = config_with("").replace(
        "write_keys = [\"test-key\"]",
        "write_keys = [\"test-key\"]\nallowed_origins = [\"https://app.example\", \"https://www.app.example\"]",
    );
    let server = Server::start(&config, &sample_rules());
    let client = reqwest::Client::new();
    let post_from = |origin: &'static str, id: &'static str| {
        client
            .post(server.url("/v1/batch"))
            .header("origin", origin)
            .header("content-type", "text/plain")
            .body(json!({"write_key": "test-key", "batch": [{"id": id, "name": "login", "data": {}}]}).to_string())
            .send()
    };
    for origin in ["https://app.example", "https://www.app.example"] {
        let response = post_from(origin, "cors-allowed").await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["access-control-allow-origin"], origin);
        assert_eq!(
            response.headers()["access-control-expose-headers"]
                .to_str()
                .unwrap()
                .to_ascii_lowercase(),
            "retry-after"
        );
    }
    // A browser on another origin gets no CORS header, so its page cannot read the answer.
    for origin in ["https://evil.example", "https://app.example.evil", "null"] {
        let response = post_from(origin, "cors-other").await.unwrap();
        assert!(
            !response
                .headers()
                .contains_key("access-control-allow-origin"),
            "{origin}"
        );
        let preflight = client
            .request(reqwest::Method::OPTIONS, server.url("/v1/batch"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert!(
            !preflight
                .headers()
                .contains_key("access-control-allow-origin"),
            "{origin}"
        );
    }
    println!(
        "security: CORS allow-list of 2 origins: both answered with their origin; 3 other origins (preflight and POST) got no Access-Control-Allow-Origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_are_refused_wherever_they_are_given() {
    let server = Server::start(&config_with(""), &sample_rules());
    let client = reqwest::Client::new();
    let body = events("k", 1);
    let refused = [
        client.post(server.url("/v1/batch")).bearer_auth("test-ke"),
        client
            .post(server.url("/v1/batch"))
            .bearer_auth("test-key2"),
        client
            .post(server.url("/v1/batch"))
            .basic_auth("nope", Some("test-key")),
        client
            .post(server.url("/v1/batch"))
            .header("authorization", "test-key"),
        client.post(server.url("/v1/batch")),
    ];
    let count = refused.len();
    for request in refused {
        let response = request.body(body.clone()).send().await.unwrap();
        assert_eq!(response.status(), 401);
    }
    let beacon = client
        .post(server.url("/v1/batch"))
        .header("content-type", "text/plain")
        .body(
            json!({"write_key": "TEST-KEY", "batch": [{"name": "login", "data": {}}]}).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(beacon.status(), 401);
    let metrics = server.metrics().await;
    assert_eq!(metrics["tributary_events_accepted_total"], 0.0);
    println!(
        "security: {} requests with a wrong, partial, differently-cased or missing key: all 401, 0 events stored",
        count + 1
    );
}
