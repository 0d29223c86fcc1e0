//! The per-key rate limit (`server.rate_limit_per_key` events per second).
//!
//! A token bucket per key holding one second of events. A request may take the bucket into
//! debt (so a batch larger than one second's worth still goes through when the bucket is
//! positive); while in debt the key gets `429` with a `Retry-After` of the time to repay it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Token buckets, one per key.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// `per_second` events per second per key (must be > 0).
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second: f64::from(per_second.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `events` tokens for `key`.
    ///
    /// # Errors
    /// How long to wait when the bucket is empty or in debt.
    pub fn take(&self, key: &str, events: usize) -> Result<(), Duration> {
        self.take_at(key, events, Instant::now())
    }

    fn take_at(&self, key: &str, events: usize, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.per_second,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.per_second);
        bucket.updated = now;
        if bucket.tokens <= 0.0 {
            let wait = (-bucket.tokens + 1.0) / self.per_second;
            return Err(Duration::from_secs_f64(wait.max(0.001)));
        }
        bucket.tokens -= events as f64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_rate_and_refills() {
        let limiter = RateLimiter::new(100);
        let start = Instant::now();
        assert!(limiter.take_at("k", 60, start).is_ok());
        assert!(limiter.take_at("k", 40, start).is_ok());
        let wait = limiter.take_at("k", 1, start).unwrap_err();
        assert!(wait <= Duration::from_millis(20), "{wait:?}");
        assert!(
            limiter.take_at("other", 100, start).is_ok(),
            "keys are separate"
        );
        assert!(
            limiter
                .take_at("k", 50, start + Duration::from_millis(500))
                .is_ok(),
            "refilled half"
        );
    }

    #[test]
    fn a_large_batch_goes_into_debt_then_waits() {
        let limiter = RateLimiter::new(100);
        let start = Instant::now();
        assert!(limiter.take_at("k", 500, start).is_ok());
        let wait = limiter.take_at("k", 1, start).unwrap_err();
        assert!(wait >= Duration::from_secs(4), "{wait:?}");
        assert!(
            limiter
                .take_at("k", 1, start + Duration::from_secs(5))
                .is_ok()
        );
    }
}
