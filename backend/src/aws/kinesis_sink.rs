//! The ingest's sink in AWS mode: accepted events into the Kinesis stream, through the server
//! SDK's producer (KPL aggregation per shard, `PutRecords` of many records, only refused entries
//! retried, with backoff, until the request's time budget — the producer's `record_ttl` — runs
//! out).
//!
//! # Invariants
//! - `append` returns `Ok` only when every event's record is in the stream; otherwise `Err`,
//!   and the ingest answers `503` so the client retries the whole request with the same ids
//!   (events that did land are then duplicates, removed downstream by id).

use std::time::Duration;

use tributary_server::kinesis::{Config, Producer, Record};

use crate::ingest::EventSink;
use crate::log::{AppendOutcome, IncomingEvent, LogError};

/// Puts accepted events into one stream.
#[derive(Clone, Debug)]
pub struct KinesisSink {
    producer: Producer,
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
    ) -> Result<Self, tributary_server::Error> {
        let config = Config {
            record_ttl: put_timeout,
            // Every request flushes at its end; a shorter wait only matters across requests.
            max_buffered_time: Duration::from_millis(20),
            request_timeout: put_timeout.min(Duration::from_secs(6)),
            ..Config::default()
        };
        let producer = Producer::builder(stream)
            .sdk_config(sdk_config)
            .config(config)
            .build()
            .await?;
        Ok(Self { producer })
    }

    /// The producer (its metrics, for tests and logs).
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    async fn put(&self, events: Vec<IncomingEvent>) -> Result<AppendOutcome, LogError> {
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
        // Sends what is buffered now; the handles then resolve as each record is put or expires.
        let _ = self.producer.flush().await;
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
