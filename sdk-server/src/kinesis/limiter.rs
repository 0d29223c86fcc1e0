//! A shard's token buckets: records per second and bytes per second, refilled continuously,
//! holding at most one second's budget.
//!
//! # Invariants
//! - A take leaves [`HEADROOM`] of the bucket's capacity in it (unless the bucket is full and
//!   the amount needs more): Kinesis's own bucket sees a request a little later than ours, and
//!   by a delay that varies with the request, so a shard sent its whole budget at once would
//!   find Kinesis a few milliseconds' worth short. The headroom is a constant offset: a shard
//!   at saturation still gets its full rate.

use std::time::Duration;

use tokio::time::Instant;

use super::config::{SHARD_BYTES_PER_SECOND, SHARD_RECORDS_PER_SECOND};

/// The share of a bucket's capacity a take leaves in it: 20 ms of budget.
const HEADROOM: f64 = 0.02;

#[derive(Debug, Clone)]
pub(crate) struct ShardLimiter {
    records: Bucket,
    bytes: Bucket,
}

#[derive(Debug, Clone)]
struct Bucket {
    capacity: f64,
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn new(capacity: f64, now: Instant) -> Self {
        Self {
            capacity,
            tokens: capacity,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.capacity).min(self.capacity);
        self.updated = now;
    }

    /// The tokens `amount` needs in the bucket: itself and the headroom, at most a full bucket
    /// (so that an amount larger than the capacity still passes, alone).
    fn needs(&self, amount: f64) -> f64 {
        (amount + self.capacity * HEADROOM).min(self.capacity)
    }

    /// Whether `amount` may be taken now.
    fn allows(&self, amount: f64) -> bool {
        self.tokens >= self.needs(amount)
    }

    /// How long until `allows(amount)`.
    fn wait_for(&self, amount: f64) -> Duration {
        let needed = self.needs(amount) - self.tokens;
        if needed <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(needed / self.capacity)
        }
    }
}

impl ShardLimiter {
    pub(crate) fn new(rate_limit_percent: u32, now: Instant) -> Self {
        let scale = f64::from(rate_limit_percent) / 100.0;
        Self {
            records: Bucket::new(SHARD_RECORDS_PER_SECOND as f64 * scale, now),
            bytes: Bucket::new(SHARD_BYTES_PER_SECOND as f64 * scale, now),
        }
    }

    /// Takes one record of `bytes` if the shard's budget allows it now.
    pub(crate) fn try_take(&mut self, bytes: usize, now: Instant) -> bool {
        self.records.refill(now);
        self.bytes.refill(now);
        let bytes = bytes as f64;
        if self.records.allows(1.0) && self.bytes.allows(bytes) {
            self.records.tokens -= 1.0;
            self.bytes.tokens -= bytes;
            true
        } else {
            false
        }
    }

    /// Whether `records` records of `bytes` in all would all be allowed now.
    pub(crate) fn covers(&self, records: usize, bytes: usize, now: Instant) -> bool {
        let mut record_bucket = self.records.clone();
        let mut byte_bucket = self.bytes.clone();
        record_bucket.refill(now);
        byte_bucket.refill(now);
        record_bucket.allows(records as f64) && byte_bucket.allows(bytes as f64)
    }

    /// When a record of `bytes` will be allowed.
    pub(crate) fn ready_at(&self, bytes: usize, now: Instant) -> Instant {
        let mut records = self.records.clone();
        let mut byte_bucket = self.bytes.clone();
        records.refill(now);
        byte_bucket.refill(now);
        let wait = records
            .wait_for(1.0)
            .max(byte_bucket.wait_for(bytes as f64));
        if wait.is_zero() {
            now
        } else {
            // At least a millisecond, so that rounding never wakes the producer too early.
            now + wait.max(Duration::from_millis(1))
        }
    }

    /// Kinesis said the shard is over its limit: spend the budget.
    pub(crate) fn exhaust(&mut self, now: Instant) {
        for bucket in [&mut self.records, &mut self.bytes] {
            bucket.refill(now);
            bucket.tokens = bucket.tokens.min(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_a_shard_to_its_limits() {
        let start = Instant::now();
        let mut limiter = ShardLimiter::new(100, start);
        let mut taken = 0;
        while limiter.try_take(100, start) {
            taken += 1;
        }
        assert_eq!(taken, 980, "1000 records/s, less 20 of headroom");
        assert!(!limiter.covers(1, 100, start));
        let later = start + Duration::from_millis(10);
        assert!(limiter.covers(10, 1_000, later));
        assert!(!limiter.covers(11, 1_000, later));
        let ready = limiter.ready_at(100, start);
        assert!(ready > start && ready <= start + Duration::from_millis(2));
        assert!(limiter.try_take(100, start + Duration::from_millis(10)));

        let mut limiter = ShardLimiter::new(100, start);
        assert!(limiter.try_take(600_000, start));
        assert!(!limiter.try_take(600_000, start), "1 MiB/s");
        let later = limiter.ready_at(600_000, start);
        assert!(limiter.try_take(600_000, later + Duration::from_millis(1)));

        // A record above the capacity passes alone, from a full bucket.
        let mut limiter = ShardLimiter::new(50, start);
        assert!(limiter.try_take(1_000_000, start));
        limiter.exhaust(start);
        assert!(!limiter.try_take(1, start));
    }
}
