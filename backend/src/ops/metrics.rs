//! The Prometheus metrics of the local pipeline (`GET /metrics`), documented in
//! `docs/OPERATIONS.md`.
//!
//! # Invariants
//! - `log_lag_events` is computed when the metrics are read, from the log's head and each
//!   destination's committed offset ([`Metrics::track_lag`]), not only when its delivery worker
//!   runs: a worker that stalls (or has not woken for the newest appends yet) shows its lag
//!   growing instead of the last value it published.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of per-destination metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabel {
    /// The destination's name.
    pub destination: String,
}

/// Labels of HTTP request counts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// The response status code.
    pub status: u16,
}

/// Every metric, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Events stored by the ingest.
    pub events_accepted: Counter,
    /// Events refused by the ingest (a `rejected` entry).
    pub events_rejected: Counter,
    /// Events answered as accepted but not stored again (seen within the dedup window).
    pub events_deduplicated: Counter,
    /// Accepted events that no rule sends anywhere.
    pub events_unrouted: Counter,
    /// Valid events of suppressed users, answered as accepted and dropped.
    pub events_suppressed: Counter,
    /// Ingest requests shed with `503` because `server.max_pending_bytes` was reached.
    pub ingest_shed_requests: Counter,
    /// Ingest responses, by status.
    pub http_requests: Family<StatusLabel, Counter>,
    /// Events delivered, per destination.
    pub delivered: Family<DestinationLabel, Counter>,
    /// Event delivery attempts that failed and were retried, per destination.
    pub retried: Family<DestinationLabel, Counter>,
    /// Events written to the DLQ, per destination.
    pub dead_lettered: Family<DestinationLabel, Counter>,
    /// Events routed to a destination but not sent because their consent lacks a category it
    /// requires.
    pub consent_denied: Family<DestinationLabel, Counter>,
    /// Events routed to a destination but not sent because their user was deleted or
    /// suppressed meanwhile.
    pub privacy_dropped: Family<DestinationLabel, Counter>,
    /// Events waiting for a retry now, per destination.
    pub retrying: Family<DestinationLabel, Gauge>,
    /// Log records not yet delivered or dead-lettered, per destination.
    pub log_lag_events: Family<DestinationLabel, Gauge>,
    /// Age in seconds of the oldest such record (the local twin of Kinesis `IteratorAge`).
    pub log_lag_seconds: Family<DestinationLabel, Gauge>,
    /// Messages in the DLQ, per destination.
    pub dlq_depth: Family<DestinationLabel, Gauge>,
    /// Log records skipped because their checksum failed.
    pub corrupt_records: Counter,
    /// Where each destination's lag is read from when the metrics are encoded.
    lag_sources: std::sync::Mutex<Vec<LagSource>>,
}

/// A destination's committed offset and the log's head, as its worker shares them.
#[derive(Debug)]
struct LagSource {
    label: DestinationLabel,
    committed: Arc<AtomicU64>,
    head: tokio::sync::watch::Receiver<u64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tributary");
        let events_accepted = Counter::default();
        let events_rejected = Counter::default();
        let events_deduplicated = Counter::default();
        let events_unrouted = Counter::default();
        let events_suppressed = Counter::default();
        let consent_denied = Family::<DestinationLabel, Counter>::default();
        let privacy_dropped = Family::<DestinationLabel, Counter>::default();
        let http_requests = Family::<StatusLabel, Counter>::default();
        let ingest_shed_requests = Counter::default();
        let delivered = Family::<DestinationLabel, Counter>::default();
        let retried = Family::<DestinationLabel, Counter>::default();
        let dead_lettered = Family::<DestinationLabel, Counter>::default();
        let retrying = Family::<DestinationLabel, Gauge>::default();
        let log_lag_events = Family::<DestinationLabel, Gauge>::default();
        let log_lag_seconds = Family::<DestinationLabel, Gauge>::default();
        let dlq_depth = Family::<DestinationLabel, Gauge>::default();
        let corrupt_records = Counter::default();
        registry.register(
            "events_accepted",
            "Events stored by the ingest",
            events_accepted.clone(),
        );
        registry.register(
            "events_rejected",
            "Events refused by the ingest",
            events_rejected.clone(),
        );
        registry.register(
            "events_deduplicated",
            "Events seen before within the dedup window, answered as accepted and not stored again",
            events_deduplicated.clone(),
        );
        registry.register(
            "events_unrouted",
            "Accepted events no routing rule enables",
            events_unrouted.clone(),
        );
        registry.register(
            "events_suppressed",
            "Valid events of suppressed users, answered as accepted and dropped",
            events_suppressed.clone(),
        );
        registry.register(
            "destination_consent_denied",
            "Events routed here but not sent: their consent lacks a required category",
            consent_denied.clone(),
        );
        registry.register(
            "destination_privacy_dropped",
            "Events routed here but not sent: their user was deleted or suppressed",
            privacy_dropped.clone(),
        );
        registry.register(
            "ingest_shed_requests",
            "Ingest requests answered 503 because too many request bytes were waiting to be stored",
            ingest_shed_requests.clone(),
        );
        registry.register(
            "http_requests",
            "Ingest responses by status",
            http_requests.clone(),
        );
        registry.register(
            "destination_delivered",
            "Events delivered",
            delivered.clone(),
        );
        registry.register(
            "destination_retried",
            "Event deliveries retried",
            retried.clone(),
        );
        registry.register(
            "destination_dead_lettered",
            "Events written to the DLQ",
            dead_lettered.clone(),
        );
        registry.register(
            "destination_retrying",
            "Events waiting for a retry",
            retrying.clone(),
        );
        registry.register(
            "log_lag_events",
            "Log records not yet delivered or dead-lettered",
            log_lag_events.clone(),
        );
        registry.register(
            "log_lag_seconds",
            "Age of the oldest log record not yet delivered or dead-lettered",
            log_lag_seconds.clone(),
        );
        registry.register(
            "dlq_depth",
            "Messages in the dead-letter queue",
            dlq_depth.clone(),
        );
        registry.register(
            "log_corrupt_records",
            "Log records skipped because their checksum failed",
            corrupt_records.clone(),
        );
        Self {
            registry,
            events_accepted,
            events_rejected,
            events_deduplicated,
            events_unrouted,
            events_suppressed,
            consent_denied,
            privacy_dropped,
            ingest_shed_requests,
            http_requests,
            delivered,
            retried,
            dead_lettered,
            retrying,
            log_lag_events,
            log_lag_seconds,
            dlq_depth,
            corrupt_records,
            lag_sources: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Has `log_lag_events` of `destination` read, on every encode, as the log's `head` minus
    /// the `committed` offset its worker stores (see the module's invariants).
    pub fn track_lag(
        &self,
        destination: &str,
        committed: Arc<AtomicU64>,
        head: tokio::sync::watch::Receiver<u64>,
    ) {
        let label = Self::destination(destination);
        let mut sources = self
            .lag_sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sources.retain(|source| source.label != label);
        sources.push(LagSource {
            label,
            committed,
            head,
        });
    }

    fn refresh_lag(&self) {
        let sources = self
            .lag_sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for source in sources.iter() {
            let head = *source.head.borrow();
            let behind = head.saturating_sub(source.committed.load(Ordering::Acquire));
            self.log_lag_events
                .get_or_create(&source.label)
                .set(i64::try_from(behind).unwrap_or(i64::MAX));
        }
    }

    /// The label of `destination`.
    pub fn destination(destination: &str) -> DestinationLabel {
        DestinationLabel {
            destination: destination.to_owned(),
        }
    }

    /// Makes every per-destination series appear (at 0) before anything happens to it.
    pub fn declare_destination(&self, destination: &str) {
        let label = Self::destination(destination);
        let _ = self.delivered.get_or_create(&label);
        let _ = self.retried.get_or_create(&label);
        let _ = self.dead_lettered.get_or_create(&label);
        let _ = self.consent_denied.get_or_create(&label);
        let _ = self.privacy_dropped.get_or_create(&label);
        let _ = self.retrying.get_or_create(&label);
        let _ = self.log_lag_events.get_or_create(&label);
        let _ = self.log_lag_seconds.get_or_create(&label);
        let _ = self.dlq_depth.get_or_create(&label);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        self.refresh_lag();
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag_line(metrics: &Metrics) -> String {
        metrics
            .encode()
            .lines()
            .find(|line| line.starts_with("tributary_log_lag_events{destination=\"warehouse\"}"))
            .unwrap()
            .to_owned()
    }

    #[test]
    fn lag_is_read_from_the_head_and_the_committed_offset_when_encoded() {
        let metrics = Metrics::new();
        let committed = Arc::new(AtomicU64::new(4));
        let (head, receiver) = tokio::sync::watch::channel(4u64);
        metrics.track_lag("warehouse", committed.clone(), receiver);
        assert_eq!(
            lag_line(&metrics),
            "tributary_log_lag_events{destination=\"warehouse\"} 0"
        );
        // Appends the worker has not seen yet (it never ran again) still count.
        head.send_replace(10);
        assert_eq!(
            lag_line(&metrics),
            "tributary_log_lag_events{destination=\"warehouse\"} 6"
        );
        committed.store(10, Ordering::Release);
        assert_eq!(
            lag_line(&metrics),
            "tributary_log_lag_events{destination=\"warehouse\"} 0"
        );
    }
}
