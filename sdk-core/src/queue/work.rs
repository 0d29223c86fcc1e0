//! The work the core asks of its platform, and the outcomes the platform reports back.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::RejectedEvent;
use crate::Timestamp;
use crate::store::StoredRecord;

/// One thing for the platform to do, from [`super::DeliveryQueue::poll`].
///
/// Perform `Persist`, `Delete` and `SaveRetryState` in the order they are emitted (a record's
/// `Persist` always comes before its `Delete`). An `Upload` may run concurrently with other work;
/// report its outcome with [`super::DeliveryQueue::upload_completed`].
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// Write these records durably (only when the queue is durable).
    Persist(Vec<StoredRecord>),
    /// Remove the records with these sequence numbers (delivered, dropped or evicted).
    Delete(Vec<u64>),
    /// Write the retry state durably, so a restart keeps backing off instead of hammering a
    /// failing server.
    SaveRetryState(RetryState),
    /// Send this batch.
    Upload(Upload),
    /// Nothing to do before this instant (or before new events or an upload's outcome arrive):
    /// call `poll` again then.
    WaitUntil(Timestamp),
    /// Nothing to do until new events or an upload's outcome arrive.
    Idle,
}

/// Identifies one upload between [`Work::Upload`] and its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UploadId(pub u64);

/// A batch to send: `POST /v1/batch` with this body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Report the outcome under this id.
    pub id: UploadId,
    /// `{"batch":[event, …],"sent_at":"…"}`, at most [`crate::Policy::max_batch_bytes`] bytes
    /// minus [`super::BODY_RESERVE_BYTES`] (room for a beacon's `write_key`).
    pub body: Vec<u8>,
    /// How many events the body holds.
    pub event_count: usize,
    /// Consecutive failed uploads before this one (0 for a first attempt).
    pub consecutive_failures: u32,
}

/// What happened to an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    /// The server answered.
    Response {
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` header, already turned into a duration from now.
        retry_after: Option<Duration>,
        /// The response body (read for `rejected` entries on a 2xx); may be empty.
        body: Vec<u8>,
    },
    /// A 2xx answer whose body the platform has read itself (a browser, with its own
    /// `JSON.parse`): the events the server refused inside the batch, by 0-based index.
    Accepted {
        /// The `rejected` entries of the answer.
        rejected: Vec<RejectedEvent>,
    },
    /// No answer: DNS, connect, TLS or I/O failure (the text is for logs only).
    ConnectionFailed(String),
    /// No answer within the platform's request timeout.
    TimedOut,
}

impl UploadOutcome {
    /// A response with this status, no `Retry-After` and an empty body.
    pub fn status(status: u16) -> Self {
        Self::Response {
            status,
            retry_after: None,
            body: Vec::new(),
        }
    }
}

/// The backoff state, kept across restarts by durable platforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RetryState {
    /// Failed uploads in a row (retryable failures only); 0 after any answer but those.
    pub consecutive_failures: u32,
    /// No upload before this instant (Unix milliseconds), when set.
    pub not_before_unix_millis: Option<u64>,
    /// The write key was refused (401/403); the queue keeps everything and probes at the cap
    /// delay until a different answer arrives.
    pub paused: bool,
}

impl RetryState {
    /// No upload before this instant, when set.
    pub fn not_before(&self) -> Option<Timestamp> {
        self.not_before_unix_millis.map(Timestamp::from_unix_millis)
    }

    /// Whether the queue is recovering from failures (then it sends one batch at a time).
    pub fn is_recovering(&self) -> bool {
        self.consecutive_failures > 0 || self.paused
    }
}
