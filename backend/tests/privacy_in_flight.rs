//! A deletion reaches events already on their way: events of the deleted user that wait for a
//! retry when the request comes are never delivered once the destination recovers (counted in
//! `destination_privacy_dropped`, not dead-lettered), while other users' events are.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use common::{Server, batch, config_with, eventually, post as post_events};
use serde_json::{Value, json};

#[derive(Default)]
struct Webhook {
    healthy: AtomicBool,
    /// (ids in the request, whether it was answered 200)
    requests: Mutex<Vec<(Vec<String>, bool)>>,
}

async fn receive(State(webhook): State<Arc<Webhook>>, body: Bytes) -> StatusCode {
    let events: Vec<Value> = serde_json::from_slice(&body).unwrap();
    let ids = events
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect();
    let healthy = webhook.healthy.load(Ordering::SeqCst);
    webhook.requests.lock().unwrap().push((ids, healthy));
    if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn attempted(webhook: &Webhook, id: &str) -> bool {
    webhook
        .requests
        .lock()
        .unwrap()
        .iter()
        .any(|(ids, _)| ids.iter().any(|seen| seen == id))
}

fn delivered(webhook: &Webhook) -> Vec<String> {
    let mut ids: Vec<String> = webhook
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, ok)| *ok)
        .flat_map(|(ids, _)| ids.clone())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_waiting_for_a_retry_are_not_delivered_after_their_user_is_deleted() {
    let webhook = Arc::new(Webhook::default());
    let app = Router::new()
        .route("/events", post(receive))
        .with_state(webhook.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let config = config_with(&format!(
        r#"
[destinations.hooks]
kind = "webhook"
url = "{url}"
batch_size = 1
retry = {{ max_attempts = 100, base_delay_ms = 50, max_delay_ms = 200 }}
"#
    ));
    let rules =
        r#"[{"destination_name": "hooks", "destination_arn": "local", "enabled_events": ["*"]}]"#;
    let server = Server::start(&config, rules);
    let events = [
        json!({"id": "gone-1", "name": "login", "data": {}, "user_id": "u-gone"}),
        json!({"type": "track", "messageId": "gone-2", "event": "Viewed", "userId": "u-gone", "anonymousId": "a-gone"}),
        json!({"id": "stay-1", "name": "login", "data": {}, "user_id": "u-stay"}),
    ];
    let response = post_events(&server.url("/v1/batch"), batch(&events)).await;
    assert_eq!(response.status(), 200);
    eventually(
        Duration::from_secs(20),
        "every event attempted and failing",
        || {
            ["gone-1", "gone-2", "stay-1"]
                .iter()
                .all(|id| attempted(&webhook, id))
        },
    )
    .await;

    let response = reqwest::Client::new()
        .post(server.url("/v1/privacy/delete"))
        .header("content-type", "application/json")
        .body(json!({"user_id": "u-gone"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let record: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(record["erasure"]["log"], 2, "{record}");
    assert_eq!(
        record["erasure"]["destinations"]["hooks"]["status"],
        "unsupported"
    );

    webhook.healthy.store(true, Ordering::SeqCst);
    eventually(
        Duration::from_secs(20),
        "the other user's event delivered",
        || delivered(&webhook) == ["stay-1"],
    )
    .await;
    let metric = |metrics: &std::collections::HashMap<String, f64>, name: &str| {
        metrics
            .get(&format!("{name}{{destination=\"hooks\"}}"))
            .copied()
            .unwrap_or(-1.0)
    };
    let mut metrics = server.metrics().await;
    for _ in 0..100 {
        if metric(&metrics, "tributary_destination_privacy_dropped_total") == 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        metrics = server.metrics().await;
    }
    assert_eq!(
        metric(&metrics, "tributary_destination_privacy_dropped_total"),
        2.0
    );
    assert_eq!(
        metric(&metrics, "tributary_destination_dead_lettered_total"),
        0.0
    );
    assert_eq!(
        metric(&metrics, "tributary_destination_delivered_total"),
        1.0
    );
    assert_eq!(metric(&metrics, "tributary_destination_retrying"), 0.0);
    assert_eq!(delivered(&webhook), ["stay-1"]);
}
