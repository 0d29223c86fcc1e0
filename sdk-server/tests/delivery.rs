//! Events reach the ingest once per accepted batch, with the envelope the server SDK promises.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Reply, ScriptedIngest};
use serde_json::json;
use tributary_server::{Client, DropReason, Error, Event, QueueEvent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_delivered_once_with_its_envelope() {
    let ingest = ScriptedIngest::start([]).await;
    let client = Client::builder("test-key")
        .endpoint(&ingest.url)
        .build()
        .unwrap();
    for index in 0..250 {
        client
            .track(
                Event::new("page_view")
                    .user_id(format!("user-{}", index % 7))
                    .property("i", index),
            )
            .unwrap();
    }
    client.identify("user-1", json!({"plan": "pro"})).unwrap();
    client.flush().await.unwrap();

    let accepted = ingest.accepted_ids();
    assert_eq!(accepted.len(), 251);
    assert!(
        accepted.values().all(|count| *count == 1),
        "each event once"
    );
    let requests = ingest.received();
    assert!(
        requests
            .iter()
            .all(|request| request.authorization.as_deref() == Some("Bearer test-key"))
    );
    assert!(requests.iter().all(|request| request.events.len() <= 500));

    let events: Vec<_> = requests
        .iter()
        .flat_map(|request| request.events.clone())
        .collect();
    let first = events.iter().find(|event| event["data"]["i"] == 0).unwrap();
    assert_eq!(first["name"], "page_view");
    assert_eq!(first["user_id"], "user-0");
    assert_eq!(first["data"], json!({"i": 0}));
    assert_eq!(first["source"], "server");
    assert_eq!(first["context"]["library"]["name"], "tributary-server");
    assert!(first["timestamp"].is_string());
    assert_eq!(uuid_version(first["id"].as_str().unwrap()), '7');
    // Up to four batches are in flight at once, so batches may arrive in any order; inside a
    // batch the events keep the order they were tracked in.
    for request in &requests {
        let order: Vec<i64> = request
            .events
            .iter()
            .filter_map(|event| event["data"]["i"].as_i64())
            .collect();
        assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "{order:?}");
    }
    let identify = events
        .iter()
        .find(|event| event["name"] == "$identify")
        .unwrap();
    assert_eq!(identify["data"], json!({"plan": "pro"}));
    assert_eq!(identify["context"]["traits"], json!({"plan": "pro"}));

    let stats = client.stats();
    assert_eq!(stats.counters.delivered, 251);
    assert_eq!(stats.queued, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_are_sent_when_asked() {
    let ingest = ScriptedIngest::start([]).await;
    let client = Client::builder("k")
        .endpoint(&ingest.url)
        .gzip(true)
        .build()
        .unwrap();
    client.track(Event::new("login")).unwrap();
    client.flush().await.unwrap();
    let requests = ingest.received();
    assert_eq!(requests[0].content_encoding.as_deref(), Some("gzip"));
    assert_eq!(requests[0].events[0]["name"], "login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_are_refused_at_once_or_reported_and_good_ones_still_go() {
    let ingest = ScriptedIngest::start([]).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let client = Client::builder("k")
        .endpoint(&ingest.url)
        .on_event(move |event| sink.lock().unwrap().push(event.clone()))
        .build()
        .unwrap();

    let error = client.track(Event::new("$bogus")).unwrap_err();
    assert!(matches!(error, Error::InvalidEvent(_)));
    assert!(
        error
            .to_string()
            .contains("name: `$bogus` is not a reserved event"),
        "{error}"
    );
    let error = client
        .track(Event::new("x").data(json!("text")))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid event: data: must be a JSON object"
    );

    // Too large is only known once serialized: dropped, counted and reported.
    client
        .track(Event::new("huge").property("blob", "x".repeat(40_000)))
        .unwrap();
    client.track(Event::new("fine")).unwrap();
    client.flush().await.unwrap();

    assert_eq!(ingest.accepted_ids().len(), 1);
    assert_eq!(client.stats().counters.dropped.invalid, 1);
    let seen = seen.lock().unwrap();
    assert!(seen.iter().any(|event| matches!(
        event,
        QueueEvent::Dropped { reason: DropReason::Invalid, detail, .. } if detail.contains("over the limit of 32768 bytes")
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shut_down_client_refuses_events() {
    let ingest = ScriptedIngest::start([Reply::Status(200)]).await;
    let client = Client::builder("k").endpoint(&ingest.url).build().unwrap();
    let clone = client.clone();
    client.shutdown(Duration::from_secs(1)).await;
    assert!(matches!(
        clone.track(Event::new("late")),
        Err(Error::Closed)
    ));
    assert!(matches!(clone.flush().await, Err(Error::Closed)));
}

#[test]
fn building_outside_a_runtime_is_a_clear_error() {
    let error = Client::builder("k").build().unwrap_err();
    assert!(matches!(error, Error::NoRuntime), "{error}");
}

fn uuid_version(id: &str) -> char {
    id.chars().nth(14).unwrap()
}
