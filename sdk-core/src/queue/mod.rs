//! The delivery queue: a state machine the platform drives.
//!
//! The platform feeds events with [`DeliveryQueue::enqueue`], asks for [`Work`] with
//! [`DeliveryQueue::poll`] until it gets [`Work::WaitUntil`] or [`Work::Idle`], performs the work,
//! and reports each upload's outcome with [`DeliveryQueue::upload_completed`]. Every decision —
//! when to flush, what goes in a batch, what an answer means, how long to back off, what to evict —
//! is made here, by the rules in [`crate::policy`], so every platform behaves the same.
//!
//! # Invariants
//! - Records leave in order: batches take the oldest waiting records; a failed batch's records go
//!   back in sequence order before any newer record.
//! - Every record that leaves the queue is counted once, as delivered, dropped or evicted
//!   ([`Counters`]), and (when durable) gets exactly one `Delete` after its `Persist`.
//! - `poll` emits all pending `Persist` work before any `Upload`, so a record is never uploaded
//!   before the platform was asked to store it.
//! - While recovering from failures (backoff or pause) only one upload is in flight: a probe.

mod batch;
mod counters;
mod work;

use std::collections::VecDeque;

pub use batch::{BODY_RESERVE_BYTES, RejectedEvent};
pub use counters::{Counters, DropCounts, DropReason, QueueEvent};
pub use work::{RetryState, Upload, UploadId, UploadOutcome, Work};

use crate::envelope::{Envelope, EventId, ValidationError};
use crate::policy::{Policy, ResponseClass};
use crate::store::StoredRecord;
use crate::{Timestamp, envelope};
use batch::AcceptedResponse;
use counters::Notifications;

/// The queue of events waiting for delivery, and the rules that move them.
#[derive(Debug)]
pub struct DeliveryQueue {
    policy: Policy,
    durable: bool,
    rng: fastrand::Rng,
    next_seq: u64,
    next_upload_id: u64,
    /// Records not in flight, oldest (lowest `seq`) first.
    waiting: VecDeque<StoredRecord>,
    waiting_bytes: usize,
    in_flight: Vec<InFlight>,
    in_flight_events: usize,
    in_flight_bytes: usize,
    to_persist: Vec<StoredRecord>,
    to_delete: Vec<u64>,
    /// Batch sizes forced by 413 splits; the last is used next.
    split_caps: Vec<usize>,
    retry: RetryState,
    retry_state_changed: bool,
    flush_requested: bool,
    counters: Counters,
    notifications: Notifications,
}

#[derive(Debug)]
struct InFlight {
    id: UploadId,
    records: Vec<StoredRecord>,
    bytes: usize,
}

impl DeliveryQueue {
    /// A queue following `policy`. A `durable` queue emits `Persist`/`Delete`/`SaveRetryState`
    /// work for a store; a memory-only one emits none. `seed` seeds the generator for event ids
    /// and jitter (the platform supplies entropy; tests supply a constant).
    pub fn new(policy: Policy, durable: bool, seed: u64) -> Self {
        Self {
            policy,
            durable,
            rng: fastrand::Rng::with_seed(seed),
            next_seq: 1,
            next_upload_id: 1,
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            in_flight: Vec::new(),
            in_flight_events: 0,
            in_flight_bytes: 0,
            to_persist: Vec::new(),
            to_delete: Vec::new(),
            split_caps: Vec::new(),
            retry: RetryState::default(),
            retry_state_changed: false,
            flush_requested: false,
            counters: Counters::default(),
            notifications: Notifications::default(),
        }
    }

    /// The rules this queue follows.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Takes back what a store held at start-up: its records (in any order), how many records it
    /// found corrupt and skipped, and the saved retry state. Call before enqueuing new events.
    pub fn restore(
        &mut self,
        mut records: Vec<StoredRecord>,
        corrupt: usize,
        retry: Option<RetryState>,
    ) {
        // Sequence numbers are unique, so an unstable sort gives the one order (and less code).
        records.sort_unstable_by_key(|record| record.seq);
        if let Some(last) = records.last() {
            self.next_seq = self.next_seq.max(last.seq + 1);
        }
        if corrupt > 0 {
            self.drop_counted(
                corrupt,
                DropReason::Corrupt,
                "unreadable record in the store".into(),
            );
        }
        for record in records {
            self.counters.restored += 1;
            self.make_room_for(record.payload.len());
            self.waiting_bytes += record.payload.len();
            self.waiting.push_back(record);
        }
        if let Some(retry) = retry {
            self.retry = retry;
        }
    }

    /// Validates an event, gives it an id (UUIDv7) and a `timestamp` when it has none, and
    /// queues its JSON. When the queue is full the oldest waiting events are evicted (counted).
    ///
    /// # Errors
    /// The [`ValidationError`] of an event that breaks an envelope rule; it is counted as dropped
    /// ([`DropReason::Invalid`]) and nothing is queued.
    pub fn enqueue(
        &mut self,
        mut event: Envelope,
        now: Timestamp,
    ) -> Result<String, ValidationError> {
        let happened_at = match event.timestamp {
            Some(timestamp) => Timestamp::from_datetime(timestamp).unwrap_or(now),
            None => {
                event.timestamp = Some(now.to_datetime());
                now
            }
        };
        let id = match &event.id {
            Some(id) => id.clone(),
            None => {
                let id = EventId::new_v7(happened_at, &mut self.rng).to_string();
                event.id = Some(id.clone());
                id
            }
        };
        let payload = event.validate().and_then(|()| event.to_json_bytes());
        match payload {
            Ok(payload) => {
                self.push(payload, now);
                Ok(id)
            }
            Err(error) => {
                self.drop_counted(1, DropReason::Invalid, error.to_string());
                Err(error)
            }
        }
    }

    /// Queues an event already serialized by the platform, after checking that it is a valid
    /// envelope with an `id`.
    ///
    /// # Errors
    /// As [`DeliveryQueue::enqueue`]; an event without `id` is refused (`id: is required`).
    pub fn enqueue_json(&mut self, json: &str, now: Timestamp) -> Result<String, ValidationError> {
        let checked = Envelope::from_json(json).and_then(|event| {
            envelope::validation::check_event_size(json.len())?;
            event
                .id
                .ok_or(ValidationError::new("id", envelope::Problem::Missing))
        });
        match checked {
            Ok(id) => {
                self.push(json.as_bytes().to_vec(), now);
                Ok(id)
            }
            Err(error) => {
                self.drop_counted(1, DropReason::Invalid, error.to_string());
                Err(error)
            }
        }
    }

    /// Queues an event the platform serialized itself (a browser, with `JSON.stringify`), so the
    /// core needs no JSON library: the platform gives the event its `id`, `timestamp` and
    /// `data` object; the core checks the `name` rules and the size limit and queues the bytes
    /// as they are.
    ///
    /// # Errors
    /// The [`ValidationError`] of a bad name or an event over
    /// [`envelope::validation::MAX_EVENT_BYTES`]; it is counted as dropped
    /// ([`DropReason::Invalid`]) and nothing is queued.
    pub fn enqueue_serialized(
        &mut self,
        name: &str,
        json: Vec<u8>,
        now: Timestamp,
    ) -> Result<(), ValidationError> {
        let checked = envelope::validation::check_name(name)
            .and_then(|()| envelope::validation::check_event_size(json.len()));
        match checked {
            Ok(()) => {
                self.push(json, now);
                Ok(())
            }
            Err(error) => {
                self.drop_counted(1, DropReason::Invalid, error.to_string());
                Err(error)
            }
        }
    }

    /// Starts an upload of the oldest waiting events at once, whatever the flush triggers and
    /// the backoff say, with a body of at most `max_body_bytes` (including
    /// [`BODY_RESERVE_BYTES`]): the last chance a page that is going away has, through
    /// `navigator.sendBeacon` and its 64 KiB quota. `None` when nothing is waiting or the oldest
    /// event alone does not fit. Report its outcome like any other upload.
    pub fn start_upload_within(&mut self, max_body_bytes: usize, now: Timestamp) -> Option<Upload> {
        let oldest = self.waiting.front()?;
        let sent_at = now.to_rfc3339();
        if batch::body_len(oldest.payload.len(), &sent_at) + BODY_RESERVE_BYTES > max_body_bytes {
            return None;
        }
        Some(self.start_upload_limited(now, max_body_bytes.min(self.policy.max_batch_bytes)))
    }

    /// Sends everything waiting as soon as backoff allows, without waiting for a flush trigger.
    pub fn request_flush(&mut self) {
        if !self.waiting.is_empty() {
            self.flush_requested = true;
        }
    }

    /// The next thing for the platform to do. Call until it returns `WaitUntil` or `Idle`, and
    /// again whenever an event is enqueued, an upload completes or the wait is over.
    pub fn poll(&mut self, now: Timestamp) -> Work {
        if !self.to_persist.is_empty() {
            return Work::Persist(std::mem::take(&mut self.to_persist));
        }
        if !self.to_delete.is_empty() {
            return Work::Delete(std::mem::take(&mut self.to_delete));
        }
        if self.retry_state_changed {
            self.retry_state_changed = false;
            if self.durable {
                return Work::SaveRetryState(self.retry);
            }
        }
        if self.waiting.is_empty() || self.in_flight.len() >= self.upload_slots() {
            return Work::Idle;
        }
        if let Some(not_before) = self.retry.not_before()
            && now < not_before
        {
            // A saved or skewed wait never exceeds the longest wait the policy allows.
            let longest = self.policy.backoff_cap.max(self.policy.paused_delay);
            return Work::WaitUntil(not_before.min(now.saturating_add(longest)));
        }
        if self.is_flush_due(now) {
            return Work::Upload(self.start_upload(now));
        }
        let oldest = self
            .waiting
            .front()
            .map_or(now, |record| record.enqueued_at);
        // A clock that went backwards must not postpone the flush by more than one interval.
        let due = oldest.saturating_add(self.policy.flush_interval);
        Work::WaitUntil(due.min(now.saturating_add(self.policy.flush_interval)))
    }

    /// Reports what happened to an upload. Unknown ids are ignored (an outcome reported twice).
    pub fn upload_completed(&mut self, upload: UploadId, outcome: UploadOutcome, now: Timestamp) {
        let Some(position) = self.in_flight.iter().position(|flight| flight.id == upload) else {
            return;
        };
        let flight = self.in_flight.swap_remove(position);
        self.in_flight_events -= flight.records.len();
        self.in_flight_bytes -= flight.bytes;
        match outcome {
            UploadOutcome::Response {
                status,
                retry_after,
                body,
            } => match self.policy.classify(status) {
                ResponseClass::Delivered => {
                    self.delivered(flight, AcceptedResponse::parse(&body));
                }
                ResponseClass::Retryable => {
                    self.retry_later(flight.records, now, retry_after, format!("HTTP {status}"));
                }
                ResponseClass::Paused => self.pause(flight.records, status, now),
                ResponseClass::Permanent => {
                    self.set_retry_state(RetryState::default());
                    let body = std::str::from_utf8(&body).unwrap_or("(a body that is not UTF-8)");
                    let detail = format!("HTTP {status}: {body}");
                    self.remove_records(&flight.records);
                    self.drop_counted(flight.records.len(), DropReason::Permanent, detail);
                }
                ResponseClass::TooLarge => self.split(flight.records),
            },
            UploadOutcome::Accepted { rejected } => {
                self.delivered(flight, AcceptedResponse { rejected });
            }
            UploadOutcome::ConnectionFailed(error) => {
                self.retry_later(flight.records, now, None, error);
            }
            UploadOutcome::TimedOut => {
                self.retry_later(flight.records, now, None, "request timed out".into());
            }
        }
    }

    /// Events queued: waiting and in flight.
    pub fn len(&self) -> usize {
        self.waiting.len() + self.in_flight_events
    }

    /// Whether no event is waiting or in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of event JSON queued: waiting and in flight.
    pub fn queued_bytes(&self) -> usize {
        self.waiting_bytes + self.in_flight_bytes
    }

    /// The sequence number of the newest event queued so far (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// The lowest sequence number still queued, waiting or in flight; `None` when empty. A
    /// platform's `flush` is complete when this is past the `last_seq` it saw when called.
    pub fn oldest_queued_seq(&self) -> Option<u64> {
        let waiting = self.waiting.front().map(|record| record.seq);
        let in_flight = self
            .in_flight
            .iter()
            .filter_map(|flight| flight.records.first().map(|record| record.seq))
            .min();
        match (waiting, in_flight) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Uploads handed out and not yet completed.
    pub fn uploads_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The backoff state.
    pub fn retry_state(&self) -> RetryState {
        self.retry
    }

    /// What the queue has done so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The notifications since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<QueueEvent> {
        self.notifications.take()
    }

    fn upload_slots(&self) -> usize {
        if self.retry.is_recovering() {
            1
        } else {
            self.policy.max_concurrent_uploads.max(1)
        }
    }

    fn is_flush_due(&self, now: Timestamp) -> bool {
        let oldest_age = self
            .waiting
            .front()
            .map_or(std::time::Duration::ZERO, |record| {
                now.saturating_duration_since(record.enqueued_at)
            });
        self.flush_requested
            || self.retry.is_recovering()
            || !self.split_caps.is_empty()
            || self.waiting.len() >= self.policy.flush_at_events
            || oldest_age >= self.policy.flush_interval
    }

    fn push(&mut self, payload: Vec<u8>, now: Timestamp) {
        let record = StoredRecord::new(self.next_seq, now, payload);
        self.next_seq += 1;
        self.counters.enqueued += 1;
        self.make_room_for(record.payload.len());
        self.waiting_bytes += record.payload.len();
        if self.durable {
            self.to_persist.push(record.clone());
        }
        self.waiting.push_back(record);
    }

    /// Evicts the oldest waiting records until one more record of `bytes` fits. Records in flight
    /// are not evicted (their upload may already have arrived), so when the whole capacity is in
    /// flight the queue holds one record over it, never more.
    fn make_room_for(&mut self, bytes: usize) {
        let mut evicted = Vec::new();
        while !self.waiting.is_empty()
            && (self.len() + 1 > self.policy.capacity_events
                || self.queued_bytes() + bytes > self.policy.capacity_bytes)
        {
            if let Some(record) = self.waiting.pop_front() {
                self.waiting_bytes -= record.payload.len();
                evicted.push(record);
            }
        }
        if !evicted.is_empty() {
            self.remove_records(&evicted);
            self.counters.evicted += evicted.len() as u64;
            self.notifications.push(QueueEvent::Evicted {
                count: evicted.len(),
            });
        }
    }

    fn start_upload(&mut self, now: Timestamp) -> Upload {
        self.start_upload_limited(now, self.policy.max_batch_bytes)
    }

    fn start_upload_limited(&mut self, now: Timestamp, max_body_bytes: usize) -> Upload {
        let sent_at = now.to_rfc3339();
        let max_events = match self.split_caps.pop() {
            Some(cap) => cap.min(self.policy.max_batch_events),
            None => self.policy.max_batch_events,
        };
        let count = batch::records_that_fit(&self.waiting, max_events, max_body_bytes, &sent_at);
        let records: Vec<StoredRecord> = self.waiting.drain(..count).collect();
        let bytes: usize = records.iter().map(|record| record.payload.len()).sum();
        self.waiting_bytes -= bytes;
        if self.waiting.is_empty() {
            self.flush_requested = false;
        }
        let id = UploadId(self.next_upload_id);
        self.next_upload_id += 1;
        self.counters.uploads += 1;
        let upload = Upload {
            id,
            body: batch::build_body(&records, &sent_at),
            event_count: records.len(),
            consecutive_failures: self.retry.consecutive_failures,
        };
        self.in_flight_events += records.len();
        self.in_flight_bytes += bytes;
        self.in_flight.push(InFlight { id, records, bytes });
        upload
    }

    fn delivered(&mut self, flight: InFlight, response: AcceptedResponse) {
        if self.retry.is_recovering() || self.retry.not_before_unix_millis.is_some() {
            self.set_retry_state(RetryState::default());
        }
        let total = flight.records.len();
        let (rejected, first_error) = response.rejected_within(total);
        self.remove_records(&flight.records);
        self.counters.delivered += (total - rejected) as u64;
        if rejected > 0 {
            let detail = first_error.unwrap_or("rejected by the server").to_owned();
            self.drop_counted(rejected, DropReason::Rejected, detail);
        }
        self.notifications.push(QueueEvent::Delivered {
            upload: flight.id,
            count: total - rejected,
        });
    }

    fn retry_later(
        &mut self,
        records: Vec<StoredRecord>,
        now: Timestamp,
        retry_after: Option<std::time::Duration>,
        cause: String,
    ) {
        let (expired, kept): (Vec<_>, Vec<_>) = records
            .into_iter()
            .partition(|record| self.policy.is_past_give_up_age(record.enqueued_at, now));
        if !expired.is_empty() {
            self.remove_records(&expired);
            let detail = format!("older than the give-up age after: {cause}");
            self.drop_counted(expired.len(), DropReason::Expired, detail);
        }
        let consecutive_failures = self.retry.consecutive_failures.saturating_add(1);
        let delay = self
            .policy
            .retry_delay(consecutive_failures, retry_after, &mut self.rng);
        let not_before = now
            .saturating_add(delay)
            .max(self.retry.not_before().unwrap_or(now));
        self.set_retry_state(RetryState {
            consecutive_failures,
            not_before_unix_millis: Some(not_before.as_unix_millis()),
            paused: false,
        });
        if !kept.is_empty() {
            self.counters.retried += kept.len() as u64;
            self.notifications.push(QueueEvent::RetryScheduled {
                count: kept.len(),
                consecutive_failures,
                delay,
                cause,
            });
            self.requeue(kept);
        }
    }

    fn pause(&mut self, records: Vec<StoredRecord>, status: u16, now: Timestamp) {
        let until = now.saturating_add(self.policy.paused_delay);
        self.set_retry_state(RetryState {
            consecutive_failures: self.retry.consecutive_failures,
            not_before_unix_millis: Some(until.as_unix_millis()),
            paused: true,
        });
        self.counters.retried += records.len() as u64;
        self.notifications
            .push(QueueEvent::Paused { status, until });
        self.requeue(records);
    }

    fn split(&mut self, records: Vec<StoredRecord>) {
        if records.len() == 1 {
            self.remove_records(&records);
            let detail = "HTTP 413: a single event is over the server's size limit".to_owned();
            self.drop_counted(1, DropReason::TooLarge, detail);
            return;
        }
        let first_half = records.len() / 2;
        // Last in, first out: the first half goes next, then the second.
        self.split_caps.push(records.len() - first_half);
        self.split_caps.push(first_half);
        self.counters.retried += records.len() as u64;
        self.requeue(records);
    }

    /// Puts records back among the waiting ones, in sequence order.
    fn requeue(&mut self, records: Vec<StoredRecord>) {
        self.waiting_bytes += records
            .iter()
            .map(|record| record.payload.len())
            .sum::<usize>();
        let newest_returning = records.last().map_or(0, |record| record.seq);
        if self
            .waiting
            .front()
            .is_none_or(|oldest| newest_returning < oldest.seq)
        {
            for record in records.into_iter().rev() {
                self.waiting.push_front(record);
            }
        } else {
            // Several uploads failed out of order: merge the two sorted runs by sequence number.
            let mut merged = VecDeque::with_capacity(self.waiting.len() + records.len());
            let mut returning = records.into_iter().peekable();
            for record in self.waiting.drain(..) {
                while let Some(back) = returning.next_if(|back| back.seq < record.seq) {
                    merged.push_back(back);
                }
                merged.push_back(record);
            }
            merged.extend(returning);
            self.waiting = merged;
        }
    }

    /// Asks the store to forget records that left the queue (or never to write them).
    fn remove_records(&mut self, records: &[StoredRecord]) {
        if !self.durable {
            return;
        }
        for record in records {
            match self
                .to_persist
                .binary_search_by_key(&record.seq, |pending| pending.seq)
            {
                Ok(index) => {
                    self.to_persist.remove(index);
                }
                Err(_) => self.to_delete.push(record.seq),
            }
        }
    }

    fn drop_counted(&mut self, count: usize, reason: DropReason, detail: String) {
        self.counters.dropped.add(reason, count);
        self.notifications.push(QueueEvent::Dropped {
            count,
            reason,
            detail,
        });
    }

    fn set_retry_state(&mut self, retry: RetryState) {
        if retry != self.retry {
            self.retry = retry;
            self.retry_state_changed = true;
        }
    }
}
