//! The errors of the server SDK.

use tributary_core::ValidationError;
use tributary_core::store::StoreError;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event breaks an envelope rule; nothing was queued.
    #[error("invalid event: {0}")]
    InvalidEvent(#[from] ValidationError),
    /// The client was shut down.
    #[error("the client is shut down")]
    Closed,
    /// The builder was given something it cannot use.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// `build` was called outside a tokio runtime.
    #[error("the client needs a tokio runtime: call build() inside one")]
    NoRuntime,
    /// The durable queue could not be opened.
    #[error("cannot open the event store: {0}")]
    Store(#[from] StoreError),
    /// Kinesis mode: the buffer is full and the producer is set to fail fast (or `try_send`
    /// was used).
    #[error("the producer's buffer is full")]
    BufferFull,
    /// Kinesis mode: the record breaks a Kinesis rule (partition key, explicit hash key, size).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// `flush` ended with events still queued because the ingest is failing; they stay queued
    /// (and persisted, with a SQLite store) and are retried with backoff.
    #[error("{queued} events not delivered yet, retrying with backoff: {cause}")]
    NotDelivered {
        /// Events still queued.
        queued: usize,
        /// The last failure.
        cause: String,
    },
}
