//! Kinesis mode: a producer that puts events straight into a Kinesis data stream, KPL-compatible
//! and without the KPL's known failures (feature `kinesis`).
//!
//! ```no_run
//! use std::time::Duration;
//! use serde_json::json;
//! use tributary_server::Event;
//! use tributary_server::kinesis::Producer;
//!
//! # async fn example() -> Result<(), tributary_server::Error> {
//! // Credentials, region and AWS_ENDPOINT_URL come from the standard AWS configuration chain.
//! let producer = Producer::builder("data-collection-stream").build().await?;
//! let handle = producer
//!     .send(Event::new("login").user_id("user-42").data(json!({"method": "sso"})))
//!     .await?;
//! match handle.await {
//!     Ok(put) => println!("on {} at {}", put.shard_id, put.sequence_number),
//!     Err(failed) => println!("gave up after {} attempts", failed.attempts.len()),
//! }
//! producer.flush().await?;
//! let report = producer.shutdown(Duration::from_secs(5)).await;
//! assert!(report.drained);
//! # Ok(()) }
//! ```
//!
//! How a record travels (one module per step):
//!
//! ```text
//! send ── envelope JSON, partition key, MD5 hash key (caller's thread), buffer permit
//!   │      (waits or fails fast when the buffer is full)
//!   ▼
//! staging ── appended to a shared batch the task takes whole (no allocation per record)
//!   ▼
//! driver ── shard_map: predicted shard (ListShards; reloaded when a record lands elsewhere)
//!   │       aggregator: KPL aggregate per shard, sealed when full or max_buffered_time old
//!   │       limiter: per-shard token buckets (1000 records/s, 1 MiB/s × rate_limit_percent)
//!   │       collect: PutRecords of ≤ 500 records, ≤ 5 MiB, round-robin over shards
//!   ▼
//! api ── PutRecords ── per entry: put → handle resolves with shard and sequence number
//!                                 failed → shard backs off (exponential, full jitter),
//!                                          record re-aggregated and retried until record_ttl,
//!                                          then its handle resolves as failed, with attempts
//! ```
//!
//! What it fixes of the KPL (awslabs/amazon-kinesis-producer issues): throttled shards back off
//! exponentially with jitter instead of being retried at once (#35); the buffer is bounded and
//! `send` waits or fails fast when it is full, instead of growing while records are retried for
//! their whole TTL (#122); every failed record comes back to its handle with its data and
//! attempt history, and is counted (#265, #349); it is plain Rust in the application's process,
//! with no native daemon to leak or crash (#497, #39).

mod aggregator;
mod api;
mod compression;
mod config;
mod driver;
mod envelope_json;
mod handles;
mod limiter;
mod metrics;
mod outcome;
mod producer;
mod shard_map;
mod spool;
mod staging;

pub use compression::{
    DecompressError, GZIP_MAGIC, MAX_INFLATED_RECORD_BYTES, RecordCompression, decompress_record,
    is_compressed,
};
pub use config::{
    Config, PUT_RECORDS_MAX_BYTES, PUT_RECORDS_MAX_COUNT, SHARD_BYTES_PER_SECOND,
    SHARD_RECORDS_PER_SECOND, WhenFull,
};
pub use metrics::{MetricsSnapshot, Summary};
pub use outcome::{Attempt, FailureReason, PutOutcome, RecordFailure, RecordHandle};
pub use producer::{Producer, ProducerBuilder, Record};

/// How a [`Producer::shutdown`] ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// The producer's metrics at the end.
    pub metrics: MetricsSnapshot,
    /// Whether every record accepted was put or failed for its own reason before the deadline.
    pub drained: bool,
    /// Records that were not put when the deadline came: their handles resolved to
    /// [`FailureReason::Shutdown`] (never sent, or sent and refused) or
    /// [`FailureReason::Unknown`] (a request carrying them was in flight).
    pub unsent: usize,
    /// Of those, the records left in the spool for the next producer (0 without a spool).
    pub persisted: usize,
}
