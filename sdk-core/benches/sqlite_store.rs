//! The SQLite store's durable enqueue rate (issue 2; target ≥ 100k events/s).
//!
//! A [`DeliveryQueue`] with [`Policy::server`] and a durable [`SqliteStore`] is driven the way a
//! platform drives it: enqueue events, then `poll` until `WaitUntil`/`Idle`, performing every
//! `Persist` and `Delete` with [`Store::perform`]. Uploads are answered at once with a `200`
//! (no network), so each event pays its whole storage life — validation and serialization,
//! the insert, its share of the batch body, and the delete after delivery — and the store stays
//! small instead of growing for the whole run (the queue's 10,000-event capacity is never
//! reached, so nothing is evicted; the bench checks this).
//!
//! `events_per_poll` is how many events are enqueued between two rounds of polling, so how many
//! records one `Persist` transaction holds: 1 is a platform that writes every event on its own,
//! 100 and 1,000 are what the server driver does under load (it takes up to 1,024 commands per
//! wake-up before polling).
//!
//! Run: `cargo bench -p tributary-core --features sqlite --bench sqlite_store`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Map, Value};
use tributary_core::queue::{UploadOutcome, Work};
use tributary_core::store::{Durability, SqliteStore, Store};
use tributary_core::{DeliveryQueue, Envelope, Policy, Timestamp};

/// A small, realistic event: `page_view` of one of 1,000 users with one property.
fn envelope(index: u64) -> Envelope {
    let mut data = Map::new();
    data.insert("square".into(), Value::from(index.wrapping_mul(index)));
    let mut event = Envelope::new("page_view", data);
    event.user_id = Some(format!("user-{}", index % 1_000));
    event
}

fn now() -> Timestamp {
    let millis = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis();
    Timestamp::from_unix_millis(u64::try_from(millis).expect("milliseconds fit u64"))
}

/// A queue and its store, driven like a platform with an ingest that accepts every batch.
struct DurablePlatform {
    queue: DeliveryQueue,
    store: SqliteStore,
    next_index: u64,
}

impl DurablePlatform {
    fn open(path: &Path, durability: Durability) -> Self {
        let mut store = SqliteStore::open(path, durability).expect("open the store");
        let loaded = store.load().expect("load the store");
        assert!(loaded.records.is_empty(), "a fresh store");
        Self {
            queue: DeliveryQueue::new(Policy::server(), true, 7),
            store,
            next_index: 0,
        }
    }

    /// Enqueues these events, then performs everything the queue asks until it waits.
    fn enqueue_and_drain(&mut self, events: Vec<Envelope>) {
        let now = now();
        for event in events {
            black_box(self.queue.enqueue(event, now).expect("a valid event"));
        }
        loop {
            match self.queue.poll(now) {
                Work::Upload(upload) => {
                    let body = format!(r#"{{"accepted":{},"rejected":[]}}"#, upload.event_count);
                    black_box(&upload.body);
                    self.queue.upload_completed(
                        upload.id,
                        UploadOutcome::Response {
                            status: 200,
                            retry_after: None,
                            body: body.into_bytes(),
                        },
                        now,
                    );
                }
                Work::WaitUntil(_) | Work::Idle => return,
                storage => self.store.perform(&storage).expect("store write"),
            }
        }
    }

    fn next_events(&mut self, count: usize) -> Vec<Envelope> {
        let start = self.next_index;
        self.next_index += count as u64;
        (start..self.next_index).map(envelope).collect()
    }

    /// Everything enqueued was either delivered or is still waiting (fewer than a flush's worth);
    /// nothing was dropped or evicted, and the store holds exactly what is still queued.
    fn check(&mut self) {
        let counters = *self.queue.counters();
        assert_eq!(counters.evicted, 0, "{counters:?}");
        assert_eq!(counters.dropped.after_enqueue(), 0, "{counters:?}");
        assert_eq!(counters.dropped.invalid, 0, "{counters:?}");
        assert_eq!(
            counters.enqueued,
            counters.delivered + self.queue.len() as u64,
            "{counters:?}"
        );
        assert!(self.queue.len() < Policy::server().capacity_events);
        let stored = self.store.load().expect("load").records.len();
        assert_eq!(stored, self.queue.len(), "the store holds what is queued");
    }
}

fn durable_enqueue(c: &mut Criterion) {
    let folder = tempfile::Builder::new()
        .prefix("sqlite-store-bench")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a temporary folder");
    let cases = [
        (
            Durability::ProcessCrash,
            "process_crash",
            &[1, 100, 1_000][..],
        ),
        (Durability::PowerLoss, "power_loss", &[1, 1_000][..]),
    ];
    let mut group = c.benchmark_group("sqlite_durable_enqueue");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (durability, label, batch_sizes) in cases {
        for &events_per_poll in batch_sizes {
            let path = folder.path().join(format!("{label}-{events_per_poll}.db"));
            let mut platform = DurablePlatform::open(&path, durability);
            group.throughput(Throughput::Elements(events_per_poll as u64));
            group.bench_function(
                BenchmarkId::new(label, format!("{events_per_poll}_events_per_poll")),
                |b| {
                    b.iter_custom(|iterations| {
                        let mut elapsed = Duration::ZERO;
                        for _ in 0..iterations {
                            let events = platform.next_events(events_per_poll);
                            let started = Instant::now();
                            platform.enqueue_and_drain(events);
                            elapsed += started.elapsed();
                        }
                        elapsed
                    });
                },
            );
            platform.check();
        }
    }
    group.finish();
}

criterion_group!(benches, durable_enqueue);
criterion_main!(benches);
