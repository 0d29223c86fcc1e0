//! The producer's settings, their defaults, and why they differ from the KPL's where they do.

use std::time::Duration;

use tributary_core::kpl;

use super::compression::RecordCompression;

/// What `send` does when the buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Wait for room (backpressure): a producer faster than the stream slows down.
    #[default]
    Wait,
    /// Fail at once with [`crate::Error::BufferFull`].
    FailFast,
}

/// Every setting of the Kinesis producer; [`Config::default`] gives the defaults below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Pack user records bound for the same shard into KPL aggregates (default on).
    pub aggregation: bool,
    /// The most bytes of one aggregate's data (KPL `AggregationMaxSize`, default 50 KiB).
    pub aggregation_max_bytes: usize,
    /// The most user records in one aggregate (KPL `AggregationMaxCount`, default 4294967295).
    pub aggregation_max_count: usize,
    /// The most Kinesis records in one `PutRecords` (KPL `CollectionMaxCount`, default 500,
    /// the API's limit).
    pub collection_max_count: usize,
    /// The most bytes (data and partition keys) in one `PutRecords` (KPL `CollectionMaxSize`,
    /// default 5 MiB, the API's limit).
    pub collection_max_bytes: usize,
    /// How long a record may wait to be batched before it is sent (KPL `RecordMaxBufferedTime`,
    /// default 100 ms).
    pub max_buffered_time: Duration,
    /// Per-shard token buckets allow this percentage of Kinesis's shard limits, 1000 records/s
    /// and 1 MiB/s (KPL `RateLimit`). Default 100: the KPL's 150 only turns into throttling
    /// errors, which this producer backs off from anyway.
    pub rate_limit_percent: u32,
    /// How long a record may take to be put; then its handle resolves to
    /// [`crate::kinesis::FailureReason::Expired`] with its attempt history (KPL `RecordTtl`,
    /// default 30 s).
    pub record_ttl: Duration,
    /// How long one `PutRecords` may take (KPL `RequestTimeout`, default 6 s).
    pub request_timeout: Duration,
    /// `PutRecords` requests in flight at once (KPL `MaxConnections`, default 24).
    pub max_in_flight_requests: usize,
    /// The most user records buffered (not yet put or failed), default 100,000. The KPL has no
    /// bound, and grows until the process dies.
    pub buffer_max_records: usize,
    /// The most bytes of user records buffered, default 64 MiB.
    pub buffer_max_bytes: usize,
    /// What `send` does when the buffer is full (default: wait).
    pub when_full: WhenFull,
    /// The first retry delay ceiling of a shard that failed (throttling or any other error);
    /// it doubles with each consecutive failure, with full jitter (default 100 ms). The KPL
    /// retries at once.
    pub backoff_base: Duration,
    /// The largest retry delay ceiling (default 5 s).
    pub backoff_cap: Duration,
    /// Whether each Kinesis record is gzip data (default [`RecordCompression::None`], what
    /// KPL-aware consumers read). With gzip, `aggregation_max_bytes` bounds an aggregate before
    /// compression; consumers inflate records first (`decompress_record`).
    pub record_compression: RecordCompression,
}

/// Kinesis's per-shard write limits.
pub const SHARD_RECORDS_PER_SECOND: u64 = 1_000;
/// Kinesis's per-shard write limit in bytes per second (data and partition keys).
pub const SHARD_BYTES_PER_SECOND: u64 = 1_048_576;
/// `PutRecords`'s limit on entries.
pub const PUT_RECORDS_MAX_COUNT: usize = 500;
/// `PutRecords`'s limit on bytes.
pub const PUT_RECORDS_MAX_BYTES: usize = 5 * 1_048_576;

impl Default for Config {
    fn default() -> Self {
        Self {
            aggregation: true,
            aggregation_max_bytes: kpl::DEFAULT_MAX_AGGREGATE_BYTES,
            aggregation_max_count: 4_294_967_295,
            collection_max_count: PUT_RECORDS_MAX_COUNT,
            collection_max_bytes: PUT_RECORDS_MAX_BYTES,
            max_buffered_time: Duration::from_millis(100),
            rate_limit_percent: 100,
            record_ttl: Duration::from_secs(30),
            request_timeout: Duration::from_secs(6),
            max_in_flight_requests: 24,
            buffer_max_records: 100_000,
            buffer_max_bytes: 64 * 1_048_576,
            when_full: WhenFull::Wait,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(5),
            record_compression: RecordCompression::None,
        }
    }
}

impl Config {
    /// Checks the settings against Kinesis's limits.
    pub(crate) fn check(&self) -> Result<(), String> {
        let checks = [
            (
                (1..=PUT_RECORDS_MAX_COUNT).contains(&self.collection_max_count),
                "collection_max_count must be 1..=500",
            ),
            (
                (kpl::MAX_KINESIS_RECORD_BYTES..=PUT_RECORDS_MAX_BYTES)
                    .contains(&self.collection_max_bytes),
                "collection_max_bytes must be 1 MiB..=5 MiB",
            ),
            (
                (64..=kpl::MAX_KINESIS_RECORD_BYTES - 1024).contains(&self.aggregation_max_bytes),
                "aggregation_max_bytes must be 64..=1047552",
            ),
            (
                self.aggregation_max_count >= 1,
                "aggregation_max_count must be at least 1",
            ),
            (
                (1..=1_000).contains(&self.rate_limit_percent),
                "rate_limit_percent must be 1..=1000",
            ),
            (
                self.max_in_flight_requests >= 1,
                "max_in_flight_requests must be at least 1",
            ),
            (
                self.buffer_max_records >= 1 && self.buffer_max_records <= u32::MAX as usize,
                "buffer_max_records must be 1..=4294967295",
            ),
            (
                self.buffer_max_bytes >= kpl::MAX_KINESIS_RECORD_BYTES
                    && self.buffer_max_bytes <= u32::MAX as usize,
                "buffer_max_bytes must be 1 MiB..=4 GiB",
            ),
            (!self.record_ttl.is_zero(), "record_ttl must not be zero"),
            (
                !self.request_timeout.is_zero(),
                "request_timeout must not be zero",
            ),
            (
                self.backoff_base <= self.backoff_cap,
                "backoff_base must not exceed backoff_cap",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, message)) => Err((*message).to_owned()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_checked() {
        Config::default().check().unwrap();
        let config = Config {
            collection_max_count: 501,
            ..Config::default()
        };
        assert_eq!(
            config.check().unwrap_err(),
            "collection_max_count must be 1..=500"
        );
    }
}
