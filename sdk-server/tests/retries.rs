//! Each answer class against a live HTTP server: retried, dropped, split, or paused.

mod common;

use std::time::Duration;

use common::{Reply, ScriptedIngest, eventually};
use tributary_server::{Client, Error, Event, Policy};

/// The server policy with short delays so the tests run in a second or two.
fn quick_policy() -> Policy {
    let mut policy = Policy::server();
    policy.backoff_base = Duration::from_millis(20);
    policy.paused_delay = Duration::from_millis(400);
    policy
}

fn track(client: &Client, count: usize) {
    for index in 0..count {
        client.track(Event::new("e").property("i", index)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_answers_are_retried_until_accepted_and_delivered_once() {
    let ingest = ScriptedIngest::start([
        Reply::Status(500),
        Reply::Status(503),
        Reply::RetryAfter(429, 1),
        Reply::Status(408),
        Reply::Status(502),
        Reply::Status(200),
    ])
    .await;
    let client = Client::builder("k")
        .endpoint(&ingest.url)
        .policy(quick_policy())
        .build()
        .unwrap();
    track(&client, 30);
    let _ = client.flush().await; // fails: the first answer is a 500
    eventually(Duration::from_secs(10), || {
        ingest.accepted_ids().len() == 30
    })
    .await;

    let requests = ingest.received();
    assert_eq!(requests.len(), 6, "five failures, then the success");
    assert!(
        requests.iter().all(|request| request.events.len() == 30),
        "the same batch each time"
    );
    assert!(ingest.accepted_ids().values().all(|count| *count == 1));
    let after_429 = requests[3].at.duration_since(requests[2].at);
    assert!(
        after_429 >= Duration::from_secs(1),
        "Retry-After honoured: {after_429:?}"
    );
    // The ingest counts an event before its answer reaches the client.
    eventually(Duration::from_secs(5), || {
        client.stats().counters.delivered == 30
    })
    .await;
    let stats = client.stats();
    assert_eq!(
        (stats.counters.delivered, stats.counters.retried),
        (30, 150)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_refused_is_retried() {
    // Reserve a port with nothing listening on it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = Client::builder("k")
        .endpoint(&url)
        .policy(quick_policy())
        .build()
        .unwrap();
    track(&client, 3);
    let error = client.flush().await.unwrap_err();
    assert!(
        matches!(error, Error::NotDelivered { queued: 3, .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("error sending request"),
        "{error}"
    );
    assert_eq!(client.stats().queued, 3, "nothing dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_answers_drop_the_batch_without_retrying() {
    for status in [400, 404, 422] {
        let ingest = ScriptedIngest::start([Reply::Status(status)]).await;
        let client = Client::builder("k")
            .endpoint(&ingest.url)
            .policy(quick_policy())
            .build()
            .unwrap();
        track(&client, 10);
        client.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(ingest.request_count(), 1, "{status}: not retried");
        let stats = client.stats();
        assert_eq!(stats.counters.dropped.permanent, 10, "{status}");
        assert_eq!(stats.queued, 0, "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_413_splits_the_batch() {
    let ingest =
        ScriptedIngest::start([Reply::Status(413), Reply::Status(200), Reply::Status(200)]).await;
    let client = Client::builder("k")
        .endpoint(&ingest.url)
        .policy(quick_policy())
        .build()
        .unwrap();
    track(&client, 9);
    let _ = client.flush().await;
    eventually(Duration::from_secs(5), || ingest.accepted_ids().len() == 9).await;
    let mut sizes: Vec<usize> = ingest
        .received()
        .iter()
        .map(|request| request.events.len())
        .collect();
    assert_eq!(sizes[0], 9);
    sizes[1..].sort_unstable(); // the halves go out side by side
    assert_eq!(sizes, [9, 4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_pauses_the_queue_without_dropping_anything() {
    let ingest = ScriptedIngest::start([Reply::Status(401), Reply::Status(401)]).await;
    let client = Client::builder("k")
        .endpoint(&ingest.url)
        .policy(quick_policy())
        .build()
        .unwrap();
    track(&client, 12);
    let error = client.flush().await.unwrap_err();
    assert!(
        error.to_string().contains("write key was refused"),
        "{error}"
    );

    // Paused: no request before the pause delay (400 ms here, 300 s by default).
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(ingest.request_count(), 1);
    track(&client, 3);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        ingest.request_count(),
        1,
        "new events do not break the pause"
    );

    // One probe per pause, then the key works again and everything goes.
    eventually(Duration::from_secs(5), || ingest.accepted_ids().len() == 15).await;
    let requests = ingest.received();
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(
        gap >= Duration::from_millis(400),
        "waited the pause delay: {gap:?}"
    );
    // The ingest counts an event before its answer reaches the client.
    eventually(Duration::from_secs(5), || {
        client.stats().counters.delivered == 15
    })
    .await;
    let stats = client.stats();
    assert_eq!(
        stats.counters.dropped,
        Default::default(),
        "nothing dropped"
    );
    assert_eq!(stats.counters.delivered, 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_pause_is_the_cap_delay() {
    let ingest = ScriptedIngest::start([Reply::Status(403)]).await;
    let client = Client::builder("k").endpoint(&ingest.url).build().unwrap();
    track(&client, 2);
    assert!(client.flush().await.is_err());
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(ingest.request_count(), 1, "no retry for 300 s");
    assert_eq!(client.stats().queued, 2);
}
