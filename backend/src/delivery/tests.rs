//! The worker against a real log and a scripted connector: per-key order under retries, and
//! offsets that never pass an unfinished event.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::DestinationWorker;
use super::job::JobContext;
use crate::config::RetrySettings;
use crate::connectors::retry::RetryPolicy;
use crate::connectors::{Connector, Delivery, DeliveryFuture, Failure, OutgoingEvent};
use crate::dlq::DeadLetterQueue;
use crate::log::{EventLog, IncomingEvent, LogOptions};
use crate::ops::metrics::Metrics;
use crate::routing::RoutingRules;

/// Fails every batch holding an event of `failing_key` while `failures_left > 0`; records every
/// delivered event id in order.
struct ScriptedConnector {
    failing_key: String,
    failures_left: Mutex<u32>,
    delivered: Mutex<Vec<String>>,
    attempts: Mutex<Vec<Vec<String>>>,
}

impl Connector for ScriptedConnector {
    fn deliver<'a>(&'a self, events: &'a [OutgoingEvent]) -> DeliveryFuture<'a> {
        Box::pin(async move {
            self.attempts
                .lock()
                .unwrap()
                .push(events.iter().map(|event| event.id.clone()).collect());
            let holds_failing_key = events
                .iter()
                .any(|event| event.partition_key == self.failing_key);
            {
                let mut left = self.failures_left.lock().unwrap();
                if holds_failing_key && *left > 0 {
                    *left -= 1;
                    return Delivery::Failed(Failure::retryable("scripted outage"));
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.delivered
                .lock()
                .unwrap()
                .extend(events.iter().map(|event| event.id.clone()));
            Delivery::Delivered
        })
    }
}

fn incoming(id: &str, key: &str) -> IncomingEvent {
    IncomingEvent {
        id: id.into(),
        name: "login".into(),
        partition_key: key.into(),
        received_at: crate::clock::now(),
        json: format!(r#"{{"id":"{id}","name":"login","data":{{}},"anonymous_id":"{key}"}}"#),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_key_delays_only_its_own_later_events_and_the_offset_waits_for_it() {
    let folder = tempfile::tempdir().unwrap();
    let options = LogOptions {
        dedup_window: Duration::from_secs(60),
        retention: Duration::from_secs(60),
        max_bytes: 0,
    };
    let log = EventLog::open(folder.path(), &options).unwrap();
    let connector = Arc::new(ScriptedConnector {
        failing_key: "A".into(),
        failures_left: Mutex::new(3),
        delivered: Mutex::new(Vec::new()),
        attempts: Mutex::new(Vec::new()),
    });
    let rules = Arc::new(
        RoutingRules::parse(
            r#"[{"destination_name": "d", "destination_arn": "x", "enabled_events": ["*"]}]"#,
            "r.json",
        )
        .unwrap(),
    );
    let worker = DestinationWorker {
        context: Arc::new(JobContext {
            destination: "d".into(),
            connector: connector.clone(),
            retry: RetryPolicy::new(RetrySettings {
                max_attempts: 10,
                base_delay: Duration::from_millis(200),
                max_delay: Duration::from_millis(200),
            }),
            dlq: Arc::new(DeadLetterQueue::open(folder.path()).unwrap()),
            deadline: None,
            metrics: Arc::new(Metrics::new()),
            consent: crate::privacy::ConsentRequirement::default(),
            suppressions: Arc::new(crate::privacy::LiveSuppressions::empty()),
        }),
        batch_size: 1,
        max_jobs: 4,
        rules,
        log: log.clone(),
    };
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(worker.run(shutdown.clone()));

    // A1 fails three times; A2 and A3 must wait for it; B1..B3 must not.
    log.append(vec![
        incoming("A1", "A"),
        incoming("B1", "B"),
        incoming("A2", "A"),
    ])
    .await
    .unwrap();
    log.append(vec![
        incoming("B2", "B"),
        incoming("A3", "A"),
        incoming("B3", "B"),
    ])
    .await
    .unwrap();

    let reader = log.reader().unwrap();
    let mut committed_while_a1_retried = None;
    for _ in 0..400 {
        let delivered = connector.delivered.lock().unwrap().clone();
        if delivered.len() == 3
            && delivered.iter().all(|id| id.starts_with('B'))
            && committed_while_a1_retried.is_none()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
            committed_while_a1_retried = Some(reader.committed_offset("d").unwrap());
        }
        if delivered.len() == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let delivered = connector.delivered.lock().unwrap().clone();
    assert_eq!(delivered.len(), 6, "{delivered:?}");
    let a_order: Vec<&String> = delivered.iter().filter(|id| id.starts_with('A')).collect();
    assert_eq!(a_order, ["A1", "A2", "A3"], "one key's events in order");
    let first_a = delivered.iter().position(|id| id == "A1").unwrap();
    assert_eq!(
        first_a, 3,
        "B's events went while A1 was retrying: {delivered:?}"
    );
    assert_eq!(
        committed_while_a1_retried,
        Some(0),
        "the offset never passed the retrying A1 (offset 1)"
    );
    let attempts = connector.attempts.lock().unwrap().clone();
    assert_eq!(
        attempts
            .iter()
            .filter(|batch| batch.contains(&"A1".to_owned()))
            .count(),
        4
    );
    assert!(
        attempts
            .iter()
            .all(|batch| !batch.contains(&"A2".to_owned()) || batch.len() == 1)
    );

    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(
        reader.committed_offset("d").unwrap(),
        6,
        "everything done, committed on shutdown"
    );
    log.close().await;
}
