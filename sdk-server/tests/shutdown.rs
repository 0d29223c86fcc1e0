//! `shutdown()` returns within its bound and loses nothing: every event is delivered or
//! persisted for the next start.

#![cfg(feature = "sqlite")]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{Reply, ScriptedIngest};
use tributary_core::store::{SqliteStore, Store};
use tributary_server::{Client, Durability, Event, Policy};

const GRACE: Duration = Duration::from_millis(600);

fn track(client: &Client, count: usize) {
    for index in 0..count {
        client.track(Event::new("e").property("i", index)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_process_delivers_everything_before_it_exits() {
    let ingest = ScriptedIngest::start([]).await;
    let client = Client::builder("k").endpoint(&ingest.url).build().unwrap();
    track(&client, 5_000);
    let started = Instant::now();
    let report = client.shutdown(Duration::from_secs(10)).await;
    assert!(report.drained, "{report:?}");
    assert_eq!((report.lost, report.persisted), (0, 0));
    assert_eq!(report.stats.counters.delivered, 5_000);
    assert_eq!(ingest.accepted_ids().len(), 5_000);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no waiting for timers: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_ingest_cannot_hold_shutdown_past_its_bound_and_nothing_is_lost() {
    let ingest = ScriptedIngest::start([Reply::Status(200), Reply::Hang]).await;
    ingest.otherwise(Reply::Hang);
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("queue.db");
    let client = Client::builder("k")
        .endpoint(&ingest.url)
        .sqlite_store(&path, Durability::ProcessCrash)
        .build()
        .unwrap();
    track(&client, 1_000);
    tokio::time::sleep(Duration::from_millis(300)).await; // the first batches go out

    let bound = Duration::from_millis(1_500);
    let started = Instant::now();
    let report = client.shutdown(bound).await;
    let took = started.elapsed();
    assert!(took < bound + GRACE, "shutdown took {took:?}");
    assert!(!report.drained);
    assert_eq!(report.lost, 0);

    let delivered: HashSet<String> = ingest.accepted_ids().into_keys().collect();
    assert!(
        !delivered.is_empty() && delivered.len() < 1_000,
        "{}",
        delivered.len()
    );
    let mut store = SqliteStore::open(&path, Durability::ProcessCrash).unwrap();
    let persisted: HashSet<String> = store
        .load()
        .unwrap()
        .records
        .iter()
        .map(|record| {
            let event: serde_json::Value = serde_json::from_slice(&record.payload).unwrap();
            event["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(report.persisted, persisted.len());
    assert!(
        delivered.is_disjoint(&persisted),
        "delivered records were deleted"
    );
    assert_eq!(
        delivered.len() + persisted.len(),
        1_000,
        "every event delivered or persisted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_ingest_leaves_everything_persisted_and_the_next_client_sends_it() {
    let down = ScriptedIngest::start([]).await;
    down.otherwise(Reply::Status(503));
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("queue.db");
    let client = Client::builder("k")
        .endpoint(&down.url)
        .sqlite_store(&path, Durability::ProcessCrash)
        .build()
        .unwrap();
    track(&client, 300);
    let bound = Duration::from_secs(2);
    let started = Instant::now();
    let report = client.shutdown(bound).await;
    assert!(started.elapsed() < bound + GRACE, "{:?}", started.elapsed());
    assert_eq!(report.persisted, 300);
    assert!(down.accepted_ids().is_empty());
    assert!(
        down.request_count() >= 2,
        "it kept retrying until the deadline"
    );

    // The next process, with the ingest back, delivers them.
    let up = ScriptedIngest::start([]).await;
    let mut policy = Policy::server();
    policy.backoff_cap = Duration::from_millis(100); // caps the saved backoff too
    let client = Client::builder("k")
        .endpoint(&up.url)
        .policy(policy)
        .sqlite_store(&path, Durability::ProcessCrash)
        .build()
        .unwrap();
    let report = client.shutdown(Duration::from_secs(10)).await;
    assert!(report.drained, "{report:?}");
    assert_eq!(report.stats.counters.restored, 300);
    assert_eq!(up.accepted_ids().len(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_queue_reports_what_it_could_not_deliver() {
    let ingest = ScriptedIngest::start([]).await;
    ingest.otherwise(Reply::Hang);
    let client = Client::builder("k").endpoint(&ingest.url).build().unwrap();
    track(&client, 50);
    let report = client.shutdown(Duration::from_millis(300)).await;
    assert_eq!(report.lost, 50, "counted, not silently gone");
    assert_eq!(report.persisted, 0);
}
