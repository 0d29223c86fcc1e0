//! [`WebQueue`]: the delivery queue with a flat API JavaScript can drive.
//!
//! `poll` returns a work code and keeps the work's details for the accessors that follow
//! (`upload_body`, `persist_payload`, …), so no structured value crosses the boundary and the
//! module needs no serialization code. Times are Unix milliseconds as JavaScript numbers; record
//! sequence numbers are JavaScript numbers too (exact below 2^53).

use std::time::Duration;

use tributary_core::queue::{RejectedEvent, RetryState, Upload};
use tributary_core::store::StoredRecord;
use tributary_core::{DeliveryQueue, Policy, Timestamp, UploadOutcome, Work};
use wasm_bindgen::prelude::wasm_bindgen;

use crate::notice::write_notice;

/// `poll` found nothing to do until an event is enqueued or an upload completes.
pub(crate) const WORK_IDLE: u32 = 0;
/// `poll` says: call again at `wait_until()`.
pub(crate) const WORK_WAIT: u32 = 1;
/// `poll` says: send the batch of `upload_body()`.
pub(crate) const WORK_UPLOAD: u32 = 2;
/// `poll` says: store the records of `persist_*`.
pub(crate) const WORK_PERSIST: u32 = 3;
/// `poll` says: delete the records of `delete_seqs()`.
pub(crate) const WORK_DELETE: u32 = 4;
/// `poll` says: store the retry state of `retry_*`.
pub(crate) const WORK_SAVE_RETRY_STATE: u32 = 5;

/// The browser's delivery queue (see the crate docs).
#[wasm_bindgen]
#[derive(Debug)]
pub struct WebQueue {
    queue: DeliveryQueue,
    restored: Vec<StoredRecord>,
    wait_until: f64,
    upload: Option<Upload>,
    persist: Vec<StoredRecord>,
    delete: Vec<f64>,
    retry: RetryState,
}

fn timestamp(millis: f64) -> Timestamp {
    // `as` saturates: NaN and negative times become 0, which the core treats as "long ago".
    Timestamp::from_unix_millis(millis as u64)
}

#[wasm_bindgen]
impl WebQueue {
    /// A durable queue with the browser defaults, changed where a value is above zero:
    /// capacity in events and bytes, flush after `flush_at_events` or `flush_interval_ms`.
    /// `seed` (any number; the wrapper passes random bits) seeds the backoff jitter.
    #[wasm_bindgen(constructor)]
    pub fn new(
        capacity_events: u32,
        capacity_bytes: u32,
        flush_at_events: u32,
        flush_interval_ms: u32,
        seed: f64,
    ) -> WebQueue {
        let mut policy = Policy::browser();
        if capacity_events > 0 {
            policy.capacity_events = capacity_events as usize;
        }
        if capacity_bytes > 0 {
            policy.capacity_bytes = capacity_bytes as usize;
        }
        if flush_at_events > 0 {
            policy.flush_at_events = flush_at_events as usize;
        }
        if flush_interval_ms > 0 {
            policy.flush_interval = Duration::from_millis(u64::from(flush_interval_ms));
        }
        WebQueue::with_policy(policy, seed.to_bits())
    }

    /// Adds one record read back from storage; call `finish_restore` after the last.
    pub fn restore_record(&mut self, seq: f64, enqueued_at: f64, payload: String) {
        self.restored.push(StoredRecord::new(
            seq as u64,
            timestamp(enqueued_at),
            payload.into_bytes(),
        ));
    }

    /// Hands the records added by `restore_record` to the queue, with the count of unreadable
    /// ones and the saved retry state (`not_before` NaN when none was saved). Call before the
    /// first `enqueue`.
    pub fn finish_restore(
        &mut self,
        corrupt: u32,
        consecutive_failures: u32,
        not_before: f64,
        paused: bool,
    ) {
        let retry = RetryState {
            consecutive_failures,
            not_before_unix_millis: (not_before.is_finite() && not_before >= 0.0)
                .then_some(not_before as u64),
            paused,
        };
        let saved = retry != RetryState::default();
        let records = std::mem::take(&mut self.restored);
        self.queue
            .restore(records, corrupt as usize, saved.then_some(retry));
    }

    /// Queues an event's JSON (made by `JSON.stringify`, with its `id` and `timestamp`).
    /// Returns `undefined` when queued, else why not (the drop is counted).
    pub fn enqueue(&mut self, name: &str, json: String, now: f64) -> Option<String> {
        self.queue
            .enqueue_serialized(name, json.into_bytes(), timestamp(now))
            .err()
            .map(|error| error.to_string())
    }

    /// Sends what is waiting as soon as backoff allows.
    pub fn request_flush(&mut self) {
        self.queue.request_flush();
    }

    /// The next thing to do: one of the `WORK_*` codes, details in the accessors.
    pub fn poll(&mut self, now: f64) -> u32 {
        match self.queue.poll(timestamp(now)) {
            Work::Idle => WORK_IDLE,
            Work::WaitUntil(at) => {
                self.wait_until = at.as_unix_millis() as f64;
                WORK_WAIT
            }
            Work::Upload(upload) => {
                self.upload = Some(upload);
                WORK_UPLOAD
            }
            Work::Persist(records) => {
                self.persist = records;
                WORK_PERSIST
            }
            Work::Delete(seqs) => {
                self.delete = seqs.into_iter().map(|seq| seq as f64).collect();
                WORK_DELETE
            }
            Work::SaveRetryState(retry) => {
                self.retry = retry;
                WORK_SAVE_RETRY_STATE
            }
        }
    }

    /// Starts an upload of the oldest waiting events now, ignoring flush triggers and backoff,
    /// with a body of at most `max_body_bytes` (the beacon quota left). `false` when nothing is
    /// waiting or the oldest event does not fit; else the batch is in `upload_*`.
    pub fn start_beacon(&mut self, max_body_bytes: u32, now: f64) -> bool {
        self.upload = self
            .queue
            .start_upload_within(max_body_bytes as usize, timestamp(now));
        self.upload.is_some()
    }

    /// After `WORK_WAIT`: when to poll again (Unix milliseconds).
    pub fn wait_until(&self) -> f64 {
        self.wait_until
    }

    /// After `WORK_UPLOAD` or `start_beacon`: the id to report the outcome under.
    pub fn upload_id(&self) -> f64 {
        self.upload
            .as_ref()
            .map_or(0.0, |upload| upload.id.0 as f64)
    }

    /// After `WORK_UPLOAD` or `start_beacon`: the request body, `{"batch":[…],"sent_at":"…"}`.
    pub fn upload_body(&self) -> Vec<u8> {
        self.upload
            .as_ref()
            .map_or_else(Vec::new, |upload| upload.body.clone())
    }

    /// After `WORK_UPLOAD` or `start_beacon`: how many events the batch holds.
    pub fn upload_count(&self) -> u32 {
        self.upload
            .as_ref()
            .map_or(0, |upload| upload.event_count as u32)
    }

    /// After `WORK_PERSIST`: how many records to store.
    pub fn persist_count(&self) -> u32 {
        self.persist.len() as u32
    }

    /// After `WORK_PERSIST`: record `index`'s sequence number (its storage key).
    pub fn persist_seq(&self, index: u32) -> f64 {
        self.persist
            .get(index as usize)
            .map_or(0.0, |record| record.seq as f64)
    }

    /// After `WORK_PERSIST`: when record `index` was queued.
    pub fn persist_enqueued_at(&self, index: u32) -> f64 {
        self.persist
            .get(index as usize)
            .map_or(0.0, |record| record.enqueued_at.as_unix_millis() as f64)
    }

    /// After `WORK_PERSIST`: record `index`'s event JSON.
    pub fn persist_payload(&self, index: u32) -> String {
        self.persist
            .get(index as usize)
            .map_or_else(String::new, |record| {
                // Payloads are the `String`s `enqueue` was given.
                std::str::from_utf8(&record.payload)
                    .unwrap_or_default()
                    .to_owned()
            })
    }

    /// After `WORK_DELETE`: the sequence numbers to delete.
    pub fn delete_seqs(&self) -> Vec<f64> {
        self.delete.clone()
    }

    /// After `WORK_SAVE_RETRY_STATE`: failed uploads in a row.
    pub fn retry_failures(&self) -> u32 {
        self.retry.consecutive_failures
    }

    /// After `WORK_SAVE_RETRY_STATE`: no upload before (Unix milliseconds), NaN when unset.
    pub fn retry_not_before(&self) -> f64 {
        self.retry
            .not_before_unix_millis
            .map_or(f64::NAN, |millis| millis as f64)
    }

    /// After `WORK_SAVE_RETRY_STATE`: whether the write key was refused.
    pub fn retry_paused(&self) -> bool {
        self.retry.paused
    }

    /// The server answered upload `id` with a 2xx; `rejected` are the 0-based indexes of its
    /// `rejected` entries and `first_error` the first one's reason.
    pub fn completed_accepted(
        &mut self,
        id: f64,
        rejected: Vec<u32>,
        first_error: String,
        now: f64,
    ) {
        let rejected = rejected
            .into_iter()
            .enumerate()
            .map(|(position, index)| RejectedEvent {
                index: index as usize,
                error: if position == 0 {
                    first_error.clone()
                } else {
                    String::new()
                },
            })
            .collect();
        self.complete(id, UploadOutcome::Accepted { rejected }, now);
    }

    /// The server answered upload `id` with a status other than 2xx; `retry_after_ms` is its
    /// `Retry-After` in milliseconds, or a negative number or NaN when absent.
    pub fn completed_status(&mut self, id: f64, status: u16, retry_after_ms: f64, now: f64) {
        let retry_after = (retry_after_ms.is_finite() && retry_after_ms >= 0.0)
            .then(|| Duration::from_millis(retry_after_ms as u64));
        let outcome = UploadOutcome::Response {
            status,
            retry_after,
            body: Vec::new(),
        };
        self.complete(id, outcome, now);
    }

    /// Upload `id` got no answer (network error, offline, aborted); `error` is for logs.
    pub fn completed_failed(&mut self, id: f64, error: String, now: f64) {
        self.complete(id, UploadOutcome::ConnectionFailed(error), now);
    }

    /// The notifications since the last call, oldest first, one line each:
    /// `kind count detail` (see the `notice` module).
    pub fn notices(&mut self) -> String {
        let mut lines = String::new();
        for event in self.queue.take_events() {
            write_notice(&mut lines, event);
        }
        lines
    }

    /// Counters as `[enqueued, restored, delivered, dropped, evicted, retried, uploads, queued,
    /// queued_bytes]`; `dropped` counts every reason, invalid events included.
    pub fn counters(&self) -> Vec<f64> {
        let counters = self.queue.counters();
        let dropped = &counters.dropped;
        let dropped_total = dropped.after_enqueue() + dropped.invalid + dropped.corrupt;
        vec![
            counters.enqueued as f64,
            counters.restored as f64,
            counters.delivered as f64,
            dropped_total as f64,
            counters.evicted as f64,
            counters.retried as f64,
            counters.uploads as f64,
            self.queue.len() as f64,
            self.queue.queued_bytes() as f64,
        ]
    }
}

impl WebQueue {
    /// A durable queue with any policy, jitter seeded with `seed`: for Rust callers only (not
    /// exported to JavaScript, so the module's size is unchanged). The conformance suite
    /// (`sdk-wasm/tests/conformance.rs`) builds each scenario's queue with it.
    pub fn with_policy(policy: Policy, seed: u64) -> WebQueue {
        WebQueue {
            queue: DeliveryQueue::new(policy, true, seed),
            restored: Vec::new(),
            wait_until: 0.0,
            upload: None,
            persist: Vec::new(),
            delete: Vec::new(),
            retry: RetryState::default(),
        }
    }

    fn complete(&mut self, id: f64, outcome: UploadOutcome, now: f64) {
        self.queue.upload_completed(
            tributary_core::queue::UploadId(id as u64),
            outcome,
            timestamp(now),
        );
    }
}
