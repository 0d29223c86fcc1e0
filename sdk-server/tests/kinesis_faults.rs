//! Kinesis mode against a Kinesis test double that injects faults: partial failures,
//! throttling, whole-request errors, a stream that never accepts (TTL), a slow stream (a full
//! buffer), shutdown, resharding, and the durable spool.

#![cfg(feature = "kinesis")]

mod kinesis_common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kinesis_common::double::{KinesisDouble, sdk_config};
use serde_json::json;
use tributary_core::kpl;
use tributary_server::kinesis::{Config, FailureReason, Producer, Record, WhenFull};
use tributary_server::{Error, Event};

const THROTTLED: &str = "ProvisionedThroughputExceededException";

async fn producer(double: &KinesisDouble, config: Config) -> Producer {
    Producer::builder("test-stream")
        .sdk_config(&sdk_config(&double.url).await)
        .config(config)
        .build()
        .await
        .unwrap()
}

fn fast() -> Config {
    Config {
        max_buffered_time: Duration::from_millis(20),
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(200),
        ..Config::default()
    }
}

/// Every user record the double stored, de-aggregated: (partition key, data).
fn user_records(double: &KinesisDouble) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for stored in double.stored() {
        for record in
            kpl::deaggregate(&stored.partition_key, None, &stored.data).expect("de-aggregates")
        {
            out.push((record.partition_key.to_owned(), record.data.to_vec()));
        }
    }
    out
}

fn record(index: usize) -> Record {
    Record::new(format!("key-{}", index % 50), format!("record-{index:05}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_failures_retry_only_the_failed_entries() {
    let double = KinesisDouble::start(2).await;
    // Every third entry of the first five requests fails.
    double.set_entry_fault(|entry| {
        (entry.request < 5 && entry.index % 3 == 0).then_some("InternalFailure")
    });
    let producer = producer(
        &double,
        Config {
            aggregation: false,
            ..fast()
        },
    )
    .await;
    let mut handles = Vec::new();
    for index in 0..300 {
        handles.push(producer.send_record(record(index)).await.unwrap());
    }
    producer.flush().await.unwrap();
    let mut retried = 0;
    let mut retries = 0;
    for handle in handles {
        let put = handle.await.unwrap();
        let last = put.attempts.last().unwrap();
        assert!(last.success);
        assert_eq!(last.shard_id.as_deref(), Some(put.shard_id.as_str()));
        retries += put.attempts.len() - 1;
        if put.attempts.len() > 1 {
            retried += 1;
            assert_eq!(
                put.attempts[0].error_code.as_deref(),
                Some("InternalFailure")
            );
            assert!(!put.attempts[0].success);
        }
        assert_eq!(put.sub_sequence_number, None);
    }
    let requests = double.requests();
    let sent: usize = requests.iter().map(|request| request.entries.len()).sum();
    let refused: usize = requests
        .iter()
        .flat_map(|request| &request.entries)
        .filter(|(_, error)| error.is_some())
        .count();
    assert!(refused > 0 && retried > 0);
    assert_eq!(retries, refused, "each refused entry is one retry");
    assert_eq!(sent, 300 + refused, "only refused entries are sent again");
    let mut stored: Vec<_> = user_records(&double).into_iter().map(|(_, d)| d).collect();
    stored.sort();
    stored.dedup();
    assert_eq!(stored.len(), 300);
    let metrics = producer.metrics();
    assert_eq!(metrics.user_records_put, 300);
    assert_eq!(metrics.errors_by_code["InternalFailure"], refused as u64);
    assert_eq!(metrics.retries_per_record.sum, refused as u64);
    assert_eq!(metrics.user_records_pending, 0);
    producer.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_shard_backs_off_exponentially_while_the_others_flow() {
    let double = KinesisDouble::start(2).await;
    let throttled_shard = double.shard_of(0);
    // Shard 0 refuses everything for its first second.
    let shard = throttled_shard.clone();
    double.set_entry_fault(move |entry| {
        (entry.shard_id == shard && entry.elapsed < Duration::from_secs(1)).then_some(THROTTLED)
    });
    let producer = producer(
        &double,
        Config {
            backoff_base: Duration::from_millis(50),
            backoff_cap: Duration::from_secs(2),
            ..fast()
        },
    )
    .await;
    let started = std::time::SystemTime::now();
    let mut handles = Vec::new();
    for index in 0..400 {
        handles.push(producer.send_record(record(index)).await.unwrap());
    }
    let mut other_done_at = Duration::ZERO;
    let mut throttled_attempts = 0;
    for handle in handles {
        let put = handle.await.unwrap();
        if put.shard_id == throttled_shard {
            throttled_attempts = throttled_attempts.max(put.attempts.len());
            assert!(put.attempts.len() > 1);
            for attempt in &put.attempts[..put.attempts.len() - 1] {
                assert_eq!(attempt.error_code.as_deref(), Some(THROTTLED));
            }
        } else {
            let attempt = &put.attempts[0];
            let done = attempt.started_at + attempt.duration;
            other_done_at = other_done_at.max(done.duration_since(started).unwrap());
            assert_eq!(put.attempts.len(), 1, "other shards are not held back");
        }
    }
    assert!(
        other_done_at < Duration::from_millis(900),
        "the healthy shard flowed while the other was throttled ({other_done_at:?})"
    );
    // Requests to the throttled shard while it refused: backoff (50 ms doubling, jittered)
    // allows a handful; retrying at once, as the KPL does, would be hundreds.
    let requests = double.requests();
    let throttled_requests = requests
        .iter()
        .filter(|request| {
            request
                .entries
                .iter()
                .any(|(shard, error)| shard == &throttled_shard && error.is_some())
        })
        .count();
    assert!(
        (2..=15).contains(&throttled_requests),
        "{throttled_requests} requests hit the throttled shard during its second"
    );
    assert!(throttled_attempts >= 2);
    let metrics = producer.metrics();
    assert!(metrics.errors_by_code[THROTTLED] >= 1);
    assert_eq!(metrics.user_records_put, 400);
    producer.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_past_their_ttl_come_back_as_failed_with_their_attempts() {
    let double = KinesisDouble::start(1).await;
    double.set_entry_fault(|_| Some(THROTTLED));
    let producer = producer(
        &double,
        Config {
            record_ttl: Duration::from_millis(600),
            ..fast()
        },
    )
    .await;
    let started = Instant::now();
    let mut handles = Vec::new();
    for index in 0..20 {
        handles.push(producer.send_record(record(index)).await.unwrap());
    }
    let flush = producer.flush().await;
    assert!(
        matches!(flush, Err(Error::NotDelivered { .. })),
        "{flush:?}"
    );
    for (index, handle) in handles.into_iter().enumerate() {
        let failure = handle.await.unwrap_err();
        assert_eq!(failure.reason, FailureReason::Expired);
        assert_eq!(failure.data, format!("record-{index:05}").into_bytes());
        assert_eq!(failure.partition_key, format!("key-{}", index % 50));
        assert!(!failure.attempts.is_empty());
        assert!(failure.attempts.iter().all(|attempt| !attempt.success
            && attempt.error_code.as_deref() == Some(THROTTLED)));
        assert!(failure.to_string().contains(THROTTLED), "{failure}");
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    let metrics = producer.metrics();
    assert_eq!(metrics.user_record_expired, 20);
    assert_eq!(metrics.user_records_failed, 20);
    assert_eq!(metrics.user_records_put, 0);
    assert_eq!(metrics.user_records_pending, 0);

    producer.shutdown(Duration::from_secs(1)).await;

    // A whole request refused (HTTP 500), then the stream recovers: retried and put (by a
    // producer with the default TTL, so that a slow machine does not expire the record).
    double.clear_faults();
    double.set_request_fault("InternalFailure", 500);
    let producer = self::producer(&double, fast()).await;
    let handle = producer.send_record(record(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    double.clear_faults();
    let put = handle.await.unwrap();
    assert!(put.attempts.len() >= 2);
    assert_eq!(
        put.attempts[0].error_code.as_deref(),
        Some("InternalFailure")
    );
    assert_eq!(put.attempts[0].error_message.as_deref(), Some("injected"));
    producer.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_makes_send_wait_or_fail_fast() {
    let double = KinesisDouble::start(1).await;
    double.set_delay(Duration::from_millis(300));
    let config = Config {
        buffer_max_records: 10,
        ..fast()
    };
    let producer = producer(&double, config.clone()).await;
    let mut handles = Vec::new();
    for index in 0..10 {
        handles.push(producer.send_record(record(index)).await.unwrap());
    }
    assert!(matches!(
        producer.try_send_record(record(10)),
        Err(Error::BufferFull)
    ));
    // `send` waits until records are put (the double answers after 300 ms).
    let started = Instant::now();
    let handle = producer.send_record(record(10)).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(200), "waited {waited:?}");
    handles.push(handle);
    for handle in handles {
        handle.await.unwrap();
    }

    let fail_fast = self::producer(
        &double,
        Config {
            when_full: WhenFull::FailFast,
            ..config
        },
    )
    .await;
    for index in 0..10 {
        fail_fast.send_record(record(index)).await.unwrap();
    }
    let error = fail_fast.send_record(record(10)).await.unwrap_err();
    assert!(matches!(error, Error::BufferFull), "{error}");
    assert_eq!(error.to_string(), "the producer's buffer is full");
    fail_fast.flush().await.unwrap();
    fail_fast.send_record(record(11)).await.unwrap();
    fail_fast.shutdown(Duration::from_secs(2)).await;
    producer.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_everything_buffered() {
    let double = KinesisDouble::start(4).await;
    let producer = producer(
        &double,
        Config {
            // Nothing would go out on time alone before the shutdown.
            max_buffered_time: Duration::from_secs(30),
            ..fast()
        },
    )
    .await;
    let mut handles = Vec::new();
    for index in 0..2_000 {
        let event = Event::new("page_view")
            .user_id(format!("user-{}", index % 100))
            .id(format!("evt-{index}"))
            .data(json!({"index": index}));
        handles.push(producer.send(event).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        double.stored().is_empty(),
        "nothing sent before the shutdown"
    );
    let started = Instant::now();
    let report = producer.shutdown(Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(report.drained, "{report:?}");
    assert_eq!(report.unsent, 0);
    assert_eq!(report.metrics.user_records_put, 2_000);
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(user_records(&double).len(), 2_000);
    assert!(matches!(
        producer.send(Event::new("late")).await,
        Err(Error::Closed)
    ));

    // A stream that never accepts: shutdown returns by its deadline and hands every record
    // back as failed.
    let double = KinesisDouble::start(1).await;
    double.set_entry_fault(|_| Some(THROTTLED));
    let producer = self::producer(&double, fast()).await;
    let handles: Vec<_> = futures_handles(&producer, 50).await;
    let started = Instant::now();
    let report = producer.shutdown(Duration::from_millis(500)).await;
    assert!(started.elapsed() < Duration::from_millis(1_100));
    assert!(!report.drained);
    assert_eq!(report.unsent, 50);
    assert_eq!(report.persisted, 0);
    for handle in handles {
        let failure = handle.await.unwrap_err();
        assert!(matches!(
            failure.reason,
            FailureReason::Shutdown | FailureReason::Unknown
        ));
    }
}

async fn futures_handles(
    producer: &Producer,
    count: usize,
) -> Vec<tributary_server::kinesis::RecordHandle> {
    let mut handles = Vec::new();
    for index in 0..count {
        handles.push(producer.send_record(record(index)).await.unwrap());
    }
    handles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_per_predicted_shard_and_reloads_the_map_after_a_reshard() {
    let double = KinesisDouble::start(2).await;
    let producer = producer(&double, fast()).await;
    let mut handles = Vec::new();
    for index in 0..1_000 {
        handles.push(producer.send_record(record(index)).await.unwrap());
    }
    producer.flush().await.unwrap();
    let mut by_shard: HashMap<String, usize> = HashMap::new();
    for handle in handles {
        let put = handle.await.unwrap();
        assert!(put.sub_sequence_number.is_some(), "aggregated");
        *by_shard.entry(put.shard_id).or_default() += 1;
    }
    assert_eq!(by_shard.len(), 2);
    // Every aggregate landed on the shard each of its records' keys maps to.
    for stored in double.stored() {
        for user in kpl::deaggregate(&stored.partition_key, None, &stored.data).unwrap() {
            assert_eq!(
                double.shard_of(kpl::partition_key_hash(user.partition_key)),
                stored.shard_id
            );
        }
    }
    let kinesis_records = double.stored().len();
    assert!(kinesis_records <= 4, "{kinesis_records} Kinesis records");
    assert_eq!(
        producer.metrics().user_records_per_kinesis_record.sum,
        1_000
    );

    let calls = double.list_shards_calls();
    double.reshard(4);
    for index in 0..400 {
        producer.send_record(record(index)).await.unwrap();
    }
    producer.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(double.list_shards_calls() > calls, "the map was reloaded");
    let before = double.stored().len();
    let mut handles = Vec::new();
    for index in 0..400 {
        handles.push(producer.send_record(record(index)).await.unwrap());
    }
    producer.flush().await.unwrap();
    for handle in handles {
        handle.await.unwrap();
    }
    for stored in &double.stored()[before..] {
        for user in kpl::deaggregate(&stored.partition_key, None, &stored.data).unwrap() {
            assert_eq!(
                double.shard_of(kpl::partition_key_hash(user.partition_key)),
                stored.shard_id,
                "after the reload, predictions match the new shards"
            );
        }
    }
    assert!(producer.metrics().shard_map_refreshes >= 1);
    producer.shutdown(Duration::from_secs(1)).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_keeps_what_a_shutdown_could_not_send() {
    use tributary_server::Durability;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    let double = KinesisDouble::start(2).await;
    double.set_entry_fault(|_| Some("InternalFailure"));
    let producer = Producer::builder("test-stream")
        .sdk_config(&sdk_config(&double.url).await)
        .config(fast())
        .spool(&path, Durability::ProcessCrash)
        .build()
        .await
        .unwrap();
    let handles = futures_handles(&producer, 100).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let report = producer.shutdown(Duration::from_millis(200)).await;
    assert_eq!(report.unsent, 100);
    assert_eq!(report.persisted, 100);
    for handle in handles {
        assert!(handle.await.unwrap_err().persisted);
    }
    assert!(double.stored().is_empty());

    // The next producer sends them.
    double.clear_faults();
    let producer = Producer::builder("test-stream")
        .sdk_config(&sdk_config(&double.url).await)
        .config(fast())
        .spool(&path, Durability::ProcessCrash)
        .build()
        .await
        .unwrap();
    producer.flush().await.unwrap();
    let report = producer.shutdown(Duration::from_secs(2)).await;
    assert!(report.drained);
    let mut data: Vec<_> = user_records(&double).into_iter().map(|(_, d)| d).collect();
    data.sort();
    assert_eq!(data.len(), 100);
    assert_eq!(data[0], b"record-00000");
    // And the spool is empty afterwards.
    let producer = Producer::builder("test-stream")
        .sdk_config(&sdk_config(&double.url).await)
        .spool(&path, Durability::ProcessCrash)
        .build()
        .await
        .unwrap();
    assert_eq!(producer.metrics().user_records_received, 0);
    producer.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_records_kinesis_would_refuse() {
    let double = KinesisDouble::start(1).await;
    let producer = producer(&double, fast()).await;
    for bad in [
        Record::new("", "x"),
        Record::new("k".repeat(257), "x"),
        Record::new("k", vec![0; 1_048_576]),
        Record::new("k", "x").explicit_hash_key("-5"),
    ] {
        let error = producer.send_record(bad).await.unwrap_err();
        assert!(matches!(error, Error::InvalidRecord(_)), "{error}");
    }
    let error = producer
        .send(Event::new("x").data(json!([1])))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidEvent(_)));
    // An explicit hash key picks the shard; a per-event partition key overrides the envelope's.
    let put = producer
        .send(Event::new("x").user_id("u").partition_key("override"))
        .await
        .unwrap();
    producer.flush().await.unwrap();
    put.await.unwrap();
    let stored = double.stored();
    assert_eq!(stored.last().unwrap().partition_key, "override");
    let text = producer.prometheus_metrics();
    assert!(text.contains("kpl_user_records_put_total{stream=\"test-stream\"} 1"));
    producer.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_shard_gets_its_budget_in_a_few_large_requests() {
    let double = KinesisDouble::start(1).await;
    double.enforce_limits(true);
    let producer = producer(
        &double,
        Config {
            aggregation: false,
            ..Config::default()
        },
    )
    .await;
    // 2.5 seconds of the shard's 1000 records/s: one second of burst at once, then 1.5 s of
    // backlog, which goes out a quarter of a second of budget at a time.
    let mut handles = Vec::new();
    for index in 0..2_500 {
        handles.push(producer.send_record(record(index)).await.unwrap());
    }
    producer.flush().await.unwrap();
    for handle in handles {
        handle.await.unwrap();
    }
    let requests = double.requests();
    let refused = requests
        .iter()
        .flat_map(|request| &request.entries)
        .filter(|(_, error)| error.is_some())
        .count();
    assert!(refused < 50, "{refused} entries refused");
    // One request per refill (a record's worth of budget every millisecond) would be hundreds,
    // and was during a flush; a request per 250 ms of budget is about 2 (the burst, 500
    // entries a request) + 6.
    assert!(
        (6..=14).contains(&requests.len()),
        "{} requests for 2,500 records on a saturated shard",
        requests.len()
    );
    assert_eq!(producer.metrics().user_records_put, 2_500);
    producer.shutdown(Duration::from_secs(1)).await;
}
