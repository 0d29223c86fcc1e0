//! The one retry rule for every connector.
//!
//! - **retryable**: connection errors, timeouts, 408, 429 (`Retry-After` honoured, capped at
//!   `max_delay_ms`), 5xx;
//! - **permanent**: every other 4xx, every 3xx (redirects are not followed), and a destination's
//!   documented per-record failures.
//!
//! Retryable failures back off exponentially with full jitter — the delay before attempt `n + 1`
//! is uniform in `[0, min(max_delay, base_delay × 2^(n−1))]` — up to `max_attempts` attempts;
//! then, and at once for permanent failures, the DLQ.

use std::time::Duration;

use super::{Failure, FailureClass};
use tributary_core::policy;

use crate::config::RetrySettings;

/// What a response status means; `None` for 2xx (delivered).
pub fn classify_status(status: u16) -> Option<FailureClass> {
    match status {
        200..=299 => None,
        408 | 429 | 500..=599 => Some(FailureClass::Retryable),
        _ => Some(FailureClass::Permanent),
    }
}

/// A failure for a non-2xx response, with a short excerpt of its body.
pub fn failure_for_status(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Failure {
    let class = classify_status(status).unwrap_or(FailureClass::Permanent);
    let excerpt: String = String::from_utf8_lossy(body).chars().take(300).collect();
    let message = if excerpt.trim().is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {}", excerpt.trim())
    };
    Failure {
        class,
        status: Some(status),
        message,
        retry_after,
    }
}

/// The rule's settings for one destination.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    settings: RetrySettings,
}

impl RetryPolicy {
    /// The rule with these settings.
    pub fn new(settings: RetrySettings) -> Self {
        Self { settings }
    }

    /// Attempts before the DLQ.
    pub fn max_attempts(&self) -> u32 {
        self.settings.max_attempts
    }

    /// The ceiling of the delay after `failed_attempts` (≥ 1) failures (the SDKs' formula).
    pub fn ceiling(&self, failed_attempts: u32) -> Duration {
        policy::exponential_ceiling(
            self.settings.base_delay,
            self.settings.max_delay,
            failed_attempts,
        )
    }

    /// The wait before the next attempt after `failed_attempts` failures: the destination's
    /// `Retry-After` (capped at `max_delay`), else full jitter under [`RetryPolicy::ceiling`].
    pub fn delay(
        &self,
        failed_attempts: u32,
        retry_after: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        match retry_after {
            Some(retry_after) => retry_after.min(self.settings.max_delay),
            None => policy::full_jitter(self.ceiling(failed_attempts), rng),
        }
    }
}

/// `Retry-After` in seconds or as an HTTP date, as a wait from now.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    policy::parse_retry_after(value, crate::clock::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(classify_status(204), None);
        for status in [408, 429, 500, 503, 599] {
            assert_eq!(
                classify_status(status),
                Some(FailureClass::Retryable),
                "{status}"
            );
        }
        for status in [301, 302, 400, 401, 403, 404, 413, 422] {
            assert_eq!(
                classify_status(status),
                Some(FailureClass::Permanent),
                "{status}"
            );
        }
        let failure = failure_for_status(503, None, b"  overloaded \n");
        assert_eq!(failure.message, "HTTP 503: overloaded");
    }

    #[test]
    fn delays_follow_full_jitter_under_the_ceiling() {
        let policy = RetryPolicy::new(RetrySettings {
            max_attempts: 8,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_millis(60_000),
        });
        let ceilings: Vec<u128> = (1..=9).map(|n| policy.ceiling(n).as_millis()).collect();
        assert_eq!(
            ceilings,
            [
                500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000
            ]
        );
        let mut rng = fastrand::Rng::with_seed(1);
        for failed in 1..=9 {
            for _ in 0..100 {
                assert!(policy.delay(failed, None, &mut rng) <= policy.ceiling(failed));
            }
        }
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(7)), &mut rng),
            Duration::from_secs(7)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(7_000)), &mut rng),
            Duration::from_secs(60)
        );
    }
}
