//! The counters an app (or a test) reads from [`crate::TributaryClient::stats`].

use tributary_core::queue::Counters;

/// What the client has done since it was opened. Events add up:
/// `tracked + restored = delivered + dropped + evicted + queued`, with `dropped` the sum of
/// `dropped_rejected`, `dropped_permanent`, `dropped_too_large` and `dropped_expired` (an invalid
/// event is never queued; a corrupt record is never restored).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ClientStats {
    /// Events waiting or in flight now.
    pub queued: u64,
    /// Events accepted by `track`, `identify`, `screen`, … since the client was opened.
    pub tracked: u64,
    /// Events found in the store when the client was opened.
    pub restored: u64,
    /// Events the ingest accepted.
    pub delivered: u64,
    /// Events sent again after a retryable failure (counted per attempt).
    pub retried: u64,
    /// Events evicted because the queue was full (the oldest go first).
    pub evicted: u64,
    /// Events refused by `track` because they break an envelope rule.
    pub dropped_invalid: u64,
    /// Events the ingest rejected one by one (`rejected` in a 200 answer).
    pub dropped_rejected: u64,
    /// Events dropped on a permanent failure (400, 422, other 4xx).
    pub dropped_permanent: u64,
    /// Events dropped because a single event was over the ingest's size limit (413).
    pub dropped_too_large: u64,
    /// Events dropped after retrying for longer than the give-up age (12 h).
    pub dropped_expired: u64,
    /// Records found torn or corrupt in the store when it was opened.
    pub dropped_corrupt: u64,
    /// Uploads started.
    pub uploads: u64,
    /// Store operations that failed (the events stay in memory).
    pub store_errors: u64,
    /// Events ignored because tracking is opted out.
    pub ignored_opted_out: u64,
    /// Failed uploads in a row (0 once an upload got an answer that ends the backoff).
    pub consecutive_failures: u32,
    /// The ingest refused the write key (401/403): the queue waits and keeps everything.
    pub paused: bool,
}

impl ClientStats {
    pub(crate) fn new(
        counters: &Counters,
        queued: usize,
        store_errors: u64,
        ignored_opted_out: u64,
        consecutive_failures: u32,
        paused: bool,
    ) -> Self {
        Self {
            queued: queued as u64,
            tracked: counters.enqueued,
            restored: counters.restored,
            delivered: counters.delivered,
            retried: counters.retried,
            evicted: counters.evicted,
            dropped_invalid: counters.dropped.invalid,
            dropped_rejected: counters.dropped.rejected,
            dropped_permanent: counters.dropped.permanent,
            dropped_too_large: counters.dropped.too_large,
            dropped_expired: counters.dropped.expired,
            dropped_corrupt: counters.dropped.corrupt,
            uploads: counters.uploads,
            store_errors,
            ignored_opted_out,
            consecutive_failures,
            paused,
        }
    }
}
