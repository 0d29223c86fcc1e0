//! The ingest's sink in AWS mode: accepted events into the Kinesis stream, through the server
//! SDK's producer (KPL aggregation per shard, `PutRecords` of many records, only refused entries
//! retried, with backoff, until the request's time budget — the producer's `record_ttl` — runs
//! out).
//!
//! **Group commit.** One sink serves every request of an instance. Where an instance serves
//! several requests at once (Lambda Managed Instances, `AWS_LAMBDA_MAX_CONCURRENCY` > 1), a
//! request that arrives while others are still being put does not flush: its events wait up to
//! [`StreamWrites::linger`] so that they share Kinesis records (aggregates, one per shard) with
//! the requests around it, and each request is answered when its own events are in. A request
//! alone flushes at once, so light traffic pays no wait (PostgreSQL's `commit_delay` with
//! `commit_siblings`, for the same reason). Records are gzip-compressed by default
//! ([`StreamWrites::compression`]): with both, a 25 KB PUT payload unit carries hundreds of
//! events instead of one request's 20 (docs/COST.md).
//!
//! # Invariants
//! - `append` returns `Ok` only when every event's record is in the stream; otherwise `Err`,
//!   and the ingest answers `503` so the client retries the whole request with the same ids
//!   (events that did land are then duplicates, removed downstream by id). Sharing a record
//!   with other requests changes nothing there: each event has its own handle.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tributary_server::kinesis::{Config, Producer, Record, RecordCompression};

use crate::ingest::EventSink;
use crate::log::{AppendOutcome, IncomingEvent, LogError};

/// How the ingest writes to the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamWrites {
    /// How long a request's events may wait for other requests' to share records with, when
    /// other requests are being put (zero: every request flushes its own at once).
    pub linger: Duration,
    /// Whether records are gzip-compressed (the router and `serve --source kinesis` inflate
    /// them).
    pub compression: RecordCompression,
    /// The most bytes of one aggregate before compression.
    pub aggregate_max_bytes: usize,
}

/// The linger of an instance that serves several requests at once.
pub const DEFAULT_CONCURRENT_LINGER: Duration = Duration::from_millis(20);
/// Aggregates of up to 128 KiB: compressed 5× or more, about one 25 KB PUT payload unit.
pub const DEFAULT_COMPRESSED_AGGREGATE_BYTES: usize = 128 * 1024;

impl StreamWrites {
    /// The defaults for an instance serving up to `max_concurrency` requests at once: gzip,
    /// 128 KiB aggregates, and a linger of [`DEFAULT_CONCURRENT_LINGER`] when it serves more
    /// than one.
    pub fn for_concurrency(max_concurrency: usize) -> Self {
        Self {
            linger: if max_concurrency > 1 {
                DEFAULT_CONCURRENT_LINGER
            } else {
                Duration::ZERO
            },
            compression: RecordCompression::Gzip,
            aggregate_max_bytes: DEFAULT_COMPRESSED_AGGREGATE_BYTES,
        }
    }
}

/// Puts accepted events into one stream.
#[derive(Clone, Debug)]
pub struct KinesisSink {
    producer: Producer,
    linger: Duration,
    /// Requests being put now.
    in_flight: Arc<AtomicUsize>,
}

/// Counts a request as in flight while it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl KinesisSink {
    /// A sink into `stream`; each request's events must be put within `put_timeout`.
    ///
    /// # Errors
    /// When the producer cannot start (an invalid setting or no tokio runtime).
    pub async fn new(
        sdk_config: &aws_config::SdkConfig,
        stream: &str,
        put_timeout: Duration,
        writes: StreamWrites,
    ) -> Result<Self, tributary_server::Error> {
        let config = Config {
            record_ttl: put_timeout,
            // A request alone flushes at once; others wait at most the linger.
            max_buffered_time: if writes.linger.is_zero() {
                DEFAULT_CONCURRENT_LINGER
            } else {
                writes.linger
            },
            request_timeout: put_timeout.min(Duration::from_secs(6)),
            record_compression: writes.compression,
            aggregation_max_bytes: writes.aggregate_max_bytes,
            ..Config::default()
        };
        let producer = Producer::builder(stream)
            .sdk_config(sdk_config)
            .config(config)
            .build()
            .await?;
        Ok(Self {
            producer,
            linger: writes.linger,
            in_flight: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The producer (its metrics, for tests and logs).
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    async fn put(&self, events: Vec<IncomingEvent>) -> Result<AppendOutcome, LogError> {
        let others = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _in_flight = InFlight(&self.in_flight);
        let count = events.len();
        let mut handles = Vec::with_capacity(count);
        for event in events {
            let record = Record::new(event.partition_key, event.json.into_bytes());
            let handle = self
                .producer
                .send_record(record)
                .await
                .map_err(|error| LogError::Stream(error.to_string()))?;
            handles.push(handle);
        }
        if others == 0 || self.linger.is_zero() {
            // Alone: sends what is buffered now. Otherwise the records go when their aggregate
            // is full or `linger` old, with the other requests' events.
            let _ = self.producer.flush().await;
        }
        // The handles resolve as each record is put or expires.
        let mut failed = 0usize;
        let mut first_failure = None;
        for handle in handles {
            if let Err(failure) = handle.await {
                failed += 1;
                first_failure.get_or_insert_with(|| failure.to_string());
            }
        }
        match first_failure {
            None => Ok(AppendOutcome {
                appended: count,
                duplicates: 0,
            }),
            Some(failure) => Err(LogError::Stream(format!(
                "{failed} of {count} events not put in the stream: {failure}"
            ))),
        }
    }
}

impl EventSink for KinesisSink {
    fn append(
        &self,
        events: Vec<IncomingEvent>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<AppendOutcome, LogError>> + Send + '_>> {
        Box::pin(self.put(events))
    }
}
