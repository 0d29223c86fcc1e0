//! A fake platform for the queue: a fake clock, a memory store, and uploads answered by hand.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use serde_json::{Map, Value, json};
use tributary_core::queue::{QueueEvent, Upload, UploadOutcome, Work};
use tributary_core::store::{MemoryStore, Store};
use tributary_core::{DeliveryQueue, Envelope, Policy, Timestamp};

/// 2026-11-27T10:00:00Z.
pub const START: Timestamp = Timestamp::from_unix_millis(1_795_773_600_000);

/// Drives a [`DeliveryQueue`] the way a platform does, with a clock that only moves when told.
pub struct Platform {
    pub queue: DeliveryQueue,
    pub store: MemoryStore,
    pub now: Timestamp,
    /// The last `WaitUntil` or `Idle` answer.
    pub last_wait: Option<Timestamp>,
    pub events: Vec<QueueEvent>,
}

impl Platform {
    pub fn new(policy: Policy) -> Self {
        Self::with_store(policy, MemoryStore::new())
    }

    pub fn with_store(policy: Policy, mut store: MemoryStore) -> Self {
        let mut queue = DeliveryQueue::new(policy, true, 42);
        let loaded = store.load().unwrap();
        queue.restore(loaded.records, loaded.corrupt, loaded.retry_state);
        Self {
            queue,
            store,
            now: START,
            last_wait: None,
            events: Vec::new(),
        }
    }

    pub fn advance(&mut self, by: Duration) {
        self.now = self.now.saturating_add(by);
    }

    /// Moves the clock to the last `WaitUntil` instant.
    pub fn advance_to_wake(&mut self) {
        let wake = self.last_wait.expect("the queue asked to be woken");
        assert!(wake >= self.now, "wake-up in the past");
        self.now = wake;
    }

    /// Enqueues `count` events named `e-<n>` whose data pads them to about `bytes` bytes.
    pub fn track(&mut self, count: usize) {
        for _ in 0..count {
            let n = self.queue.counters().enqueued;
            self.queue
                .enqueue(event(&format!("e-{n}"), 0), self.now)
                .unwrap();
        }
    }

    pub fn track_sized(&mut self, name: &str, pad: usize) {
        self.queue.enqueue(event(name, pad), self.now).unwrap();
    }

    /// Polls until the queue waits, performing storage work; returns the uploads handed out.
    pub fn run(&mut self) -> Vec<Upload> {
        let mut uploads = Vec::new();
        loop {
            match self.queue.poll(self.now) {
                Work::Upload(upload) => uploads.push(upload),
                Work::WaitUntil(at) => {
                    self.last_wait = Some(at);
                    break;
                }
                Work::Idle => {
                    self.last_wait = None;
                    break;
                }
                work => self.store.perform(&work).unwrap(),
            }
        }
        self.events.extend(self.queue.take_events());
        uploads
    }

    pub fn respond(&mut self, upload: &Upload, outcome: UploadOutcome) {
        self.queue.upload_completed(upload.id, outcome, self.now);
    }

    pub fn respond_status(&mut self, upload: &Upload, status: u16) {
        self.respond(upload, UploadOutcome::status(status));
    }

    /// The delay between now and the next wake-up.
    pub fn wait_delay(&self) -> Duration {
        self.last_wait
            .expect("waiting")
            .saturating_duration_since(self.now)
    }

    /// Checks that every event is accounted for.
    pub fn assert_counters_add_up(&self) {
        let counters = self.queue.counters();
        assert_eq!(
            counters.enqueued + counters.restored,
            counters.delivered
                + counters.dropped.after_enqueue()
                + counters.evicted
                + self.queue.len() as u64,
            "{counters:?}, queued {}",
            self.queue.len()
        );
    }
}

pub fn event(name: &str, pad: usize) -> Envelope {
    let mut data = Map::new();
    if pad > 0 {
        data.insert("pad".into(), Value::String("x".repeat(pad)));
    }
    Envelope::new(name, data)
}

/// The event names in an upload's body, in order.
pub fn names(upload: &Upload) -> Vec<String> {
    batch(upload)
        .iter()
        .map(|event| event["name"].as_str().unwrap().to_owned())
        .collect()
}

pub fn batch(upload: &Upload) -> Vec<Value> {
    let body: Value = serde_json::from_slice(&upload.body).unwrap();
    let events = body["batch"].as_array().unwrap().clone();
    assert_eq!(events.len(), upload.event_count);
    assert!(body["sent_at"].is_string());
    events
}

pub fn ok_with_rejected(indexes: &[usize]) -> UploadOutcome {
    let rejected: Vec<Value> = indexes
        .iter()
        .map(|index| json!({"index": index, "error": "name: must not be empty"}))
        .collect();
    UploadOutcome::Response {
        status: 200,
        retry_after: None,
        body: serde_json::to_vec(&json!({"accepted": 1, "rejected": rejected})).unwrap(),
    }
}
