//! What each record's handle resolves to: where it landed, or why it failed, with every attempt.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use super::handles::Receiver;

/// One `PutRecords` attempt that carried a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// When the request started.
    pub started_at: SystemTime,
    /// How long the record waited before this attempt (since it was sent, or since the previous
    /// attempt ended).
    pub delay: Duration,
    /// How long the request took.
    pub duration: Duration,
    /// The shard Kinesis put the record on (on success).
    pub shard_id: Option<String>,
    /// Kinesis's error code (`ProvisionedThroughputExceededException`, `InternalFailure`), or
    /// the request's failure (`Timeout`, `DispatchFailure`, a service error code).
    pub error_code: Option<String>,
    /// The error's message.
    pub error_message: Option<String>,
    /// Whether the record was put.
    pub success: bool,
}

/// A record that Kinesis accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// The shard it is on.
    pub shard_id: String,
    /// The sequence number of the Kinesis record that carries it.
    pub sequence_number: String,
    /// Its index in that Kinesis record when it was aggregated (the KCL's sub-sequence
    /// number), `None` when it went out on its own.
    pub sub_sequence_number: Option<u64>,
    /// Every attempt, the last one successful.
    pub attempts: Vec<Attempt>,
}

/// Why a record was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// Its `record_ttl` passed before Kinesis accepted it (`UserRecordExpired`).
    Expired,
    /// The producer shut down before it was put. With a spool it is still in the spool and is
    /// sent by the next producer that opens it.
    Shutdown,
    /// The producer shut down while a request carrying it was in flight: Kinesis may or may not
    /// have it.
    Unknown,
}

/// A record the producer gave up, returned to the caller with its data and attempt history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record not put ({reason:?}) after {} attempts{}", attempts.len(), last_error(attempts))]
pub struct RecordFailure {
    /// Why.
    pub reason: FailureReason,
    /// The record's partition key.
    pub partition_key: String,
    /// The record's data (the event's JSON for [`crate::kinesis::Producer::send`]).
    pub data: Vec<u8>,
    /// Every attempt.
    pub attempts: Vec<Attempt>,
    /// Whether the record is still in the durable spool (sent again by the next producer).
    pub persisted: bool,
}

fn last_error(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .rev()
        .find_map(|attempt| attempt.error_code.as_deref())
        .map(|code| format!(", last error {code}"))
        .unwrap_or_default()
}

/// Resolves to the record's outcome: its shard and sequence number, or the failure with its
/// attempt history (like the KPL's `ListenableFuture<UserRecordResult>`). Dropping it is fine:
/// the record is still sent, and counted in the metrics.
#[derive(Debug)]
pub struct RecordHandle {
    pub(crate) receiver: Receiver,
}

impl Future for RecordHandle {
    type Output = Result<PutOutcome, RecordFailure>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        self.receiver.poll(context)
    }
}
