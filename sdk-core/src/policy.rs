//! Every rule of the SDK defaults table, in one place, for every platform.
//!
//! | rule | default |
//! |---|---|
//! | flush when | 20 events queued, or 10 s since the oldest unsent event (server: 100 events / 1 s) |
//! | batch limits | 500 events, 512 KiB of request body |
//! | retryable | connection errors, timeouts, 408, 429, 5xx (and any status outside 2xx/4xx): exponential backoff, base 0.5 s, cap 300 s, full jitter; `Retry-After` honoured, capped at 300 s |
//! | permanent | 400, 413 (of a single event), 422 and every other 4xx not listed: the batch is dropped and counted; a 413 of several events first splits the batch in two and retries the halves |
//! | paused | 401, 403: nothing is dropped; the queue waits the cap delay, then tries again |
//! | give up | an event older than 12 h whose batch fails with a retryable error is dropped and counted |
//! | capacity | 10,000 events or 10 MiB (browser: 1,000 events or 2 MiB); when full the oldest are evicted and counted |
//!
//! The conformance suite checks these numbers on every platform; change them here and nowhere
//! else.

use std::time::Duration;

use crate::Timestamp;

/// Flush when this many events are queued (web and mobile).
pub const FLUSH_AT_EVENTS: usize = 20;
/// Flush when the oldest unsent event is this old (web and mobile).
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// Flush when this many events are queued (servers).
pub const SERVER_FLUSH_AT_EVENTS: usize = 100;
/// Flush when the oldest unsent event is this old (servers).
pub const SERVER_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// The most events in one request.
pub const MAX_BATCH_EVENTS: usize = 500;
/// The most bytes in one request body (before compression).
pub const MAX_BATCH_BYTES: usize = 512 * 1024;
/// The first backoff ceiling; it doubles with every consecutive failure.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// The largest backoff ceiling, the largest honoured `Retry-After`, and the pause after 401/403.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// Events older than this are dropped when their batch fails again.
pub const GIVE_UP_AGE: Duration = Duration::from_secs(12 * 60 * 60);
/// Queue capacity in events (mobile and servers).
pub const CAPACITY_EVENTS: usize = 10_000;
/// Queue capacity in bytes of event JSON (mobile and servers).
pub const CAPACITY_BYTES: usize = 10 * 1024 * 1024;
/// Queue capacity in events (browsers).
pub const BROWSER_CAPACITY_EVENTS: usize = 1_000;
/// Queue capacity in bytes of event JSON (browsers).
pub const BROWSER_CAPACITY_BYTES: usize = 2 * 1024 * 1024;

/// How a platform's queue flushes, batches, retries and evicts.
///
/// Build one with [`Policy::mobile`], [`Policy::browser`] or [`Policy::server`] and change
/// fields only where an application has a reason to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Flush when this many events are waiting.
    pub flush_at_events: usize,
    /// Flush when the oldest waiting event is this old.
    pub flush_interval: Duration,
    /// The most events in one batch.
    pub max_batch_events: usize,
    /// The most bytes in one batch's request body.
    pub max_batch_bytes: usize,
    /// The first backoff ceiling.
    pub backoff_base: Duration,
    /// The largest backoff ceiling and the largest `Retry-After` honoured.
    pub backoff_cap: Duration,
    /// How long to wait after a 401 or 403 before trying again.
    pub paused_delay: Duration,
    /// Events older than this are dropped when their batch fails with a retryable error.
    pub give_up_age: Duration,
    /// The most events queued (waiting and in flight).
    pub capacity_events: usize,
    /// The most bytes of event JSON queued (waiting and in flight).
    pub capacity_bytes: usize,
    /// How many uploads may be in flight at once.
    pub max_concurrent_uploads: usize,
}

impl Policy {
    /// The defaults for mobile apps (and the base of the others).
    pub const fn mobile() -> Self {
        Self {
            flush_at_events: FLUSH_AT_EVENTS,
            flush_interval: FLUSH_INTERVAL,
            max_batch_events: MAX_BATCH_EVENTS,
            max_batch_bytes: MAX_BATCH_BYTES,
            backoff_base: BACKOFF_BASE,
            backoff_cap: BACKOFF_CAP,
            paused_delay: BACKOFF_CAP,
            give_up_age: GIVE_UP_AGE,
            capacity_events: CAPACITY_EVENTS,
            capacity_bytes: CAPACITY_BYTES,
            max_concurrent_uploads: 1,
        }
    }

    /// The defaults for browsers: a smaller queue (storage quotas are small and shared).
    pub const fn browser() -> Self {
        Self {
            capacity_events: BROWSER_CAPACITY_EVENTS,
            capacity_bytes: BROWSER_CAPACITY_BYTES,
            ..Self::mobile()
        }
    }

    /// The defaults for backend servers: larger, more frequent batches, several in flight.
    pub const fn server() -> Self {
        Self {
            flush_at_events: SERVER_FLUSH_AT_EVENTS,
            flush_interval: SERVER_FLUSH_INTERVAL,
            max_concurrent_uploads: 4,
            ..Self::mobile()
        }
    }

    /// What a response status means for the batch that got it.
    pub fn classify(&self, status: u16) -> ResponseClass {
        match status {
            200..=299 => ResponseClass::Delivered,
            401 | 403 => ResponseClass::Paused,
            413 => ResponseClass::TooLarge,
            408 | 429 => ResponseClass::Retryable,
            400..=499 => ResponseClass::Permanent,
            // 5xx, and statuses a correct server never sends as a final answer (1xx, an
            // unfollowed 3xx): keep the events and retry rather than drop them on a guess.
            _ => ResponseClass::Retryable,
        }
    }

    /// The ceiling of the backoff after `consecutive_failures` (≥ 1) failures in a row:
    /// `min(cap, base × 2^(failures − 1))`.
    pub fn backoff_ceiling(&self, consecutive_failures: u32) -> Duration {
        exponential_ceiling(self.backoff_base, self.backoff_cap, consecutive_failures)
    }

    /// How long to wait before retrying: `Retry-After` when the server gave one (capped at
    /// [`Policy::backoff_cap`]), else full jitter — uniform in `[0, backoff_ceiling]`.
    pub fn retry_delay(
        &self,
        consecutive_failures: u32,
        retry_after: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        if let Some(retry_after) = retry_after {
            return retry_after.min(self.backoff_cap);
        }
        full_jitter(self.backoff_ceiling(consecutive_failures), rng)
    }

    /// Whether an event enqueued at `enqueued_at` is past the give-up age at `now`.
    pub fn is_past_give_up_age(&self, enqueued_at: Timestamp, now: Timestamp) -> bool {
        now.saturating_duration_since(enqueued_at) > self.give_up_age
    }
}

/// `min(cap, base × 2^(failures − 1))`: the backoff ceiling after `failures` (≥ 1) failures in a
/// row. The SDKs and the backend's connectors share it, so both back off alike.
pub fn exponential_ceiling(base: Duration, cap: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    base.saturating_mul(1 << doublings).min(cap)
}

/// Full jitter: a delay uniform in `[0, ceiling]`, to the millisecond.
pub fn full_jitter(ceiling: Duration, rng: &mut fastrand::Rng) -> Duration {
    let ceiling = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rng.u64(0..=ceiling))
}

/// A `Retry-After` header value — seconds, or an HTTP date — as a wait from `now`; `None` when
/// it is neither. A date in the past is a wait of zero.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at = at.duration_since(std::time::UNIX_EPOCH).ok()?;
    let at = Timestamp::from_unix_millis(u64::try_from(at.as_millis()).unwrap_or(u64::MAX));
    Some(at.saturating_duration_since(now))
}

impl Default for Policy {
    fn default() -> Self {
        Self::mobile()
    }
}

/// What a response means for the batch that got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseClass {
    /// 2xx: the events are delivered (some may be rejected individually in the body).
    Delivered,
    /// Try again later with backoff.
    Retryable,
    /// The server will never accept this batch: drop and count it.
    Permanent,
    /// The write key is refused (401/403): keep everything and wait.
    Paused,
    /// 413: split the batch, or drop a single event that is still too large.
    TooLarge,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_status_family() {
        let policy = Policy::mobile();
        for status in [200, 202, 204, 299] {
            assert_eq!(
                policy.classify(status),
                ResponseClass::Delivered,
                "{status}"
            );
        }
        for status in [408, 429, 500, 502, 503, 504, 599, 100, 302] {
            assert_eq!(
                policy.classify(status),
                ResponseClass::Retryable,
                "{status}"
            );
        }
        for status in [400, 404, 409, 422, 451] {
            assert_eq!(
                policy.classify(status),
                ResponseClass::Permanent,
                "{status}"
            );
        }
        assert_eq!(policy.classify(401), ResponseClass::Paused);
        assert_eq!(policy.classify(403), ResponseClass::Paused);
        assert_eq!(policy.classify(413), ResponseClass::TooLarge);
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = Timestamp::from_unix_millis(1_795_000_000_000);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 18 Nov 2026 11:07:10 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 18 Nov 2026 11:06:10 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_ceiling_doubles_up_to_the_cap() {
        let policy = Policy::mobile();
        let ceilings: Vec<u64> = (1..=12)
            .map(|n| policy.backoff_ceiling(n).as_millis() as u64)
            .collect();
        assert_eq!(
            ceilings,
            [
                500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000,
                300_000
            ]
        );
        assert_eq!(policy.backoff_ceiling(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn platforms_share_everything_but_their_documented_differences() {
        let (mobile, browser, server) = (Policy::mobile(), Policy::browser(), Policy::server());
        assert_eq!(
            (browser.capacity_events, browser.capacity_bytes),
            (1_000, 2 << 20)
        );
        assert_eq!(
            (mobile.capacity_events, mobile.capacity_bytes),
            (10_000, 10 << 20)
        );
        assert_eq!(
            (server.flush_at_events, server.flush_interval),
            (100, Duration::from_secs(1))
        );
        assert_eq!(
            (mobile.flush_at_events, mobile.flush_interval),
            (20, Duration::from_secs(10))
        );
        for policy in [&mobile, &browser, &server] {
            assert_eq!(
                (policy.max_batch_events, policy.max_batch_bytes),
                (500, 512 * 1024)
            );
            assert_eq!(policy.give_up_age, Duration::from_secs(43_200));
            assert_eq!(policy.paused_delay, BACKOFF_CAP);
        }
    }
}
