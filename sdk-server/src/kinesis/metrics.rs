//! The producer's metrics, under the KPL's names: a snapshot ([`MetricsSnapshot`]) and its
//! Prometheus text exposition ([`MetricsSnapshot::to_prometheus`]).
//!
//! | KPL metric | snapshot field | Prometheus |
//! |---|---|---|
//! | `UserRecordsReceived` | `user_records_received` | `kpl_user_records_received_total` |
//! | `UserRecordsPending` | `user_records_pending` | `kpl_user_records_pending` |
//! | `UserRecordsPut` | `user_records_put` | `kpl_user_records_put_total` |
//! | `UserRecordExpired` | `user_record_expired` | `kpl_user_record_expired_total` |
//! | `KinesisRecordsPut` | `kinesis_records_put` | `kpl_kinesis_records_put_total` |
//! | `KinesisRecordsDataPut` | `kinesis_records_data_put_bytes` | `kpl_kinesis_records_data_put_bytes_total` |
//! | `ErrorsByCode` | `errors_by_code` | `kpl_errors_by_code_total{code}` |
//! | `AllErrors` | `all_errors` | `kpl_all_errors_total` |
//! | `RetriesPerRecord` | `retries_per_record` | `kpl_retries_per_record` (summary) |
//! | `BufferingTime` | `buffering_time_ms` | `kpl_buffering_time_milliseconds` (summary) |
//! | `UserRecordsPerKinesisRecord` | `user_records_per_kinesis_record` | `kpl_user_records_per_kinesis_record` (summary) |
//! | `RequestTime` | `request_time_ms` | `kpl_request_time_milliseconds` (summary) |
//!
//! Beyond the KPL: `user_records_failed` (handles resolved to a failure for any reason),
//! `put_records_requests`, `shard_map_refreshes`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Count, sum and maximum of an observed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Observations.
    pub count: u64,
    /// Their sum.
    pub sum: u64,
    /// The largest.
    pub max: u64,
}

impl Summary {
    /// The mean (0 without observations).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }
}

/// The producer's counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsSnapshot {
    /// User records accepted by `send`.
    pub user_records_received: u64,
    /// User records accepted and not yet put or failed.
    pub user_records_pending: u64,
    /// User records Kinesis accepted.
    pub user_records_put: u64,
    /// User records whose handle resolved to a failure (expired, or unsent at shutdown).
    pub user_records_failed: u64,
    /// User records that expired (their `record_ttl` passed).
    pub user_record_expired: u64,
    /// Kinesis records (aggregates and single records) Kinesis accepted.
    pub kinesis_records_put: u64,
    /// Bytes of data in those Kinesis records.
    pub kinesis_records_data_put_bytes: u64,
    /// `PutRecords` requests made.
    pub put_records_requests: u64,
    /// Failed Kinesis record puts by error code (per entry; a whole request that failed counts
    /// once per entry it carried).
    pub errors_by_code: BTreeMap<String, u64>,
    /// The sum of `errors_by_code`.
    pub all_errors: u64,
    /// Retries each user record needed (observed when it is put or failed).
    pub retries_per_record: Summary,
    /// Milliseconds from `send` to the first attempt, per user record.
    pub buffering_time_ms: Summary,
    /// User records per Kinesis record put.
    pub user_records_per_kinesis_record: Summary,
    /// Milliseconds per `PutRecords` request.
    pub request_time_ms: Summary,
    /// Shard map reloads (`ListShards`).
    pub shard_map_refreshes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct AtomicSummary {
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl AtomicSummary {
    pub(crate) fn observe(&self, value: u64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.max.fetch_max(value, Ordering::Relaxed);
    }

    /// Records observations gathered elsewhere (three atomic operations for all of them).
    pub(crate) fn observe_all(&self, observations: &Observations) {
        if observations.count == 0 {
            return;
        }
        self.count.fetch_add(observations.count, Ordering::Relaxed);
        self.sum.fetch_add(observations.sum, Ordering::Relaxed);
        self.max.fetch_max(observations.max, Ordering::Relaxed);
    }

    fn get(&self) -> Summary {
        Summary {
            count: self.count.load(Ordering::Relaxed),
            sum: self.sum.load(Ordering::Relaxed),
            max: self.max.load(Ordering::Relaxed),
        }
    }
}

/// Observations gathered on the producer's task before they go into an [`AtomicSummary`].
#[derive(Debug, Default)]
pub(crate) struct Observations {
    count: u64,
    sum: u64,
    max: u64,
}

impl Observations {
    pub(crate) fn add(&mut self, value: u64) {
        self.count += 1;
        self.sum = self.sum.saturating_add(value);
        self.max = self.max.max(value);
    }
}

/// The live counters, written by the producer's task and read by `metrics()`.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) user_records_received: AtomicU64,
    pub(crate) user_records_put: AtomicU64,
    pub(crate) user_records_failed: AtomicU64,
    pub(crate) user_record_expired: AtomicU64,
    pub(crate) kinesis_records_put: AtomicU64,
    pub(crate) kinesis_records_data_put_bytes: AtomicU64,
    pub(crate) put_records_requests: AtomicU64,
    pub(crate) errors_by_code: Mutex<BTreeMap<String, u64>>,
    pub(crate) retries_per_record: AtomicSummary,
    pub(crate) buffering_time_ms: AtomicSummary,
    pub(crate) user_records_per_kinesis_record: AtomicSummary,
    pub(crate) request_time_ms: AtomicSummary,
    pub(crate) shard_map_refreshes: AtomicU64,
}

pub(crate) fn add(counter: &AtomicU64, value: u64) {
    counter.fetch_add(value, Ordering::Relaxed);
}

impl Metrics {
    pub(crate) fn error(&self, code: &str, count: u64) {
        let mut errors = self
            .errors_by_code
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match errors.get_mut(code) {
            Some(total) => *total += count,
            None => {
                errors.insert(code.to_owned(), count);
            }
        }
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let errors_by_code = self
            .errors_by_code
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let received = get(&self.user_records_received);
        let put = get(&self.user_records_put);
        let failed = get(&self.user_records_failed);
        MetricsSnapshot {
            user_records_received: received,
            user_records_pending: received.saturating_sub(put + failed),
            user_records_put: put,
            user_records_failed: failed,
            user_record_expired: get(&self.user_record_expired),
            kinesis_records_put: get(&self.kinesis_records_put),
            kinesis_records_data_put_bytes: get(&self.kinesis_records_data_put_bytes),
            put_records_requests: get(&self.put_records_requests),
            all_errors: errors_by_code.values().sum(),
            errors_by_code,
            retries_per_record: self.retries_per_record.get(),
            buffering_time_ms: self.buffering_time_ms.get(),
            user_records_per_kinesis_record: self.user_records_per_kinesis_record.get(),
            request_time_ms: self.request_time_ms.get(),
            shard_map_refreshes: get(&self.shard_map_refreshes),
        }
    }
}

impl MetricsSnapshot {
    /// The Prometheus text exposition format (version 0.0.4) of these metrics, each name
    /// prefixed with `kpl_` and labelled with `stream`.
    pub fn to_prometheus(&self, stream: &str) -> String {
        let mut out = String::new();
        let label = escape(stream);
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP kpl_{name} {help}");
            let _ = writeln!(out, "# TYPE kpl_{name} counter");
            let _ = writeln!(out, "kpl_{name}{{stream=\"{label}\"}} {value}");
        };
        counter(
            "user_records_received_total",
            "User records accepted by send (UserRecordsReceived).",
            self.user_records_received,
        );
        counter(
            "user_records_put_total",
            "User records Kinesis accepted (UserRecordsPut).",
            self.user_records_put,
        );
        counter(
            "user_records_failed_total",
            "User records returned to the caller as failed.",
            self.user_records_failed,
        );
        counter(
            "user_record_expired_total",
            "User records whose TTL passed (UserRecordExpired).",
            self.user_record_expired,
        );
        counter(
            "kinesis_records_put_total",
            "Kinesis records Kinesis accepted (KinesisRecordsPut).",
            self.kinesis_records_put,
        );
        counter(
            "kinesis_records_data_put_bytes_total",
            "Bytes of Kinesis record data put (KinesisRecordsDataPut).",
            self.kinesis_records_data_put_bytes,
        );
        counter(
            "put_records_requests_total",
            "PutRecords requests made.",
            self.put_records_requests,
        );
        counter(
            "all_errors_total",
            "Failed Kinesis record puts (AllErrors).",
            self.all_errors,
        );
        counter(
            "shard_map_refreshes_total",
            "Shard map reloads with ListShards.",
            self.shard_map_refreshes,
        );
        let _ = writeln!(
            out,
            "# HELP kpl_user_records_pending User records buffered (UserRecordsPending)."
        );
        let _ = writeln!(out, "# TYPE kpl_user_records_pending gauge");
        let _ = writeln!(
            out,
            "kpl_user_records_pending{{stream=\"{label}\"}} {}",
            self.user_records_pending
        );
        let _ = writeln!(
            out,
            "# HELP kpl_errors_by_code_total Failed Kinesis record puts by error code (ErrorsByCode)."
        );
        let _ = writeln!(out, "# TYPE kpl_errors_by_code_total counter");
        for (code, count) in &self.errors_by_code {
            let _ = writeln!(
                out,
                "kpl_errors_by_code_total{{stream=\"{label}\",code=\"{}\"}} {count}",
                escape(code)
            );
        }
        let summaries = [
            (
                "retries_per_record",
                "Retries per user record (RetriesPerRecord).",
                self.retries_per_record,
            ),
            (
                "buffering_time_milliseconds",
                "Time from send to the first attempt (BufferingTime).",
                self.buffering_time_ms,
            ),
            (
                "user_records_per_kinesis_record",
                "User records per Kinesis record (UserRecordsPerKinesisRecord).",
                self.user_records_per_kinesis_record,
            ),
            (
                "request_time_milliseconds",
                "PutRecords request time (RequestTime).",
                self.request_time_ms,
            ),
        ];
        for (name, help, summary) in summaries {
            let _ = writeln!(out, "# HELP kpl_{name} {help}");
            let _ = writeln!(out, "# TYPE kpl_{name} summary");
            let _ = writeln!(
                out,
                "kpl_{name}_count{{stream=\"{label}\"}} {}",
                summary.count
            );
            let _ = writeln!(out, "kpl_{name}_sum{{stream=\"{label}\"}} {}", summary.sum);
        }
        out
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_prometheus_text() {
        let metrics = Metrics::default();
        add(&metrics.user_records_received, 3);
        add(&metrics.user_records_put, 2);
        metrics.error("ProvisionedThroughputExceededException", 4);
        metrics.retries_per_record.observe(1);
        let mut more = Observations::default();
        more.add(1);
        more.add(3);
        metrics.retries_per_record.observe_all(&more);
        let snapshot = metrics.snapshot();
        assert_eq!(snapshot.user_records_pending, 1);
        assert_eq!(snapshot.all_errors, 4);
        assert_eq!(
            snapshot.retries_per_record,
            Summary {
                count: 3,
                sum: 5,
                max: 3
            }
        );
        let text = snapshot.to_prometheus("s\"1");
        assert!(text.contains("kpl_user_records_put_total{stream=\"s\\\"1\"} 2\n"));
        assert!(text.contains(
            "kpl_errors_by_code_total{stream=\"s\\\"1\",code=\"ProvisionedThroughputExceededException\"} 4\n"
        ));
        assert!(text.contains("kpl_retries_per_record_sum{stream=\"s\\\"1\"} 5\n"));
    }
}
