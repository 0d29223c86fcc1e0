//! A burst faster than delivery: `track` evicts the oldest (counted), `track_with_backpressure`
//! slows the producer and loses nothing.

mod common;

use std::time::Duration;

use common::{Reply, ScriptedIngest};
use tributary_server::{Client, Event, Policy};

fn small_queue() -> Policy {
    let mut policy = Policy::server();
    policy.capacity_events = 1_000;
    policy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_delivers_a_burst_twenty_times_the_queue_without_eviction() {
    let ingest = ScriptedIngest::start([]).await;
    let client = Client::builder("k")
        .endpoint(&ingest.url)
        .policy(small_queue())
        .build()
        .unwrap();
    for index in 0..20_000 {
        client
            .track_with_backpressure(Event::new("e").property("i", index))
            .await
            .unwrap();
    }
    let report = client.shutdown(Duration::from_secs(30)).await;
    assert!(report.drained, "{report:?}");
    assert_eq!(report.stats.counters.evicted, 0);
    assert_eq!(ingest.accepted_ids().len(), 20_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_backpressure_a_full_queue_evicts_the_oldest_and_counts_them() {
    let ingest = ScriptedIngest::start([]).await;
    ingest.otherwise(Reply::Hang);
    let client = Client::builder("k")
        .endpoint(&ingest.url)
        .policy(small_queue())
        .build()
        .unwrap();
    for index in 0..3_000 {
        client.track(Event::new("e").property("i", index)).unwrap();
    }
    let report = client.shutdown(Duration::from_millis(500)).await;
    let counters = report.stats.counters;
    assert_eq!(counters.enqueued, 3_000);
    assert_eq!(counters.evicted + report.lost as u64, 3_000, "{report:?}");
    // In-flight events are never evicted, so the queue may hold its capacity plus one.
    assert!(report.lost <= 1_001, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_does_not_wait_for_a_failing_ingest() {
    let ingest = ScriptedIngest::start([]).await;
    ingest.otherwise(Reply::Status(503));
    let client = Client::builder("k")
        .endpoint(&ingest.url)
        .policy(small_queue())
        .build()
        .unwrap();
    for index in 0..1_000 {
        client.track(Event::new("e").property("i", index)).unwrap();
    }
    // The queue is full and the ingest answers 503: waiting would wait for the ingest.
    tokio::time::timeout(Duration::from_secs(5), async {
        for index in 0..2_000 {
            client
                .track_with_backpressure(Event::new("late").property("i", index))
                .await
                .unwrap();
        }
    })
    .await
    .expect("did not block on a failing ingest");
    let report = client.shutdown(Duration::from_millis(200)).await;
    assert!(
        report.stats.counters.evicted > 0,
        "memory stays bounded by eviction"
    );
}
