//! What the client reports: running statistics and the outcome of a shutdown.

use tributary_core::queue::Counters;

/// A snapshot of the client's counters (see [`tributary_core::queue::Counters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// The queue's counters.
    pub counters: Counters,
    /// Events queued now (waiting and in flight).
    pub queued: usize,
    /// Store operations that failed (the events stay in memory and are still delivered).
    pub store_errors: u64,
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// The client's counters at the end.
    pub stats: Stats,
    /// Undelivered events left in the durable store, sent by the next client that opens it.
    pub persisted: usize,
    /// Undelivered events given up because the queue was in memory only (0 with a store).
    pub lost: usize,
    /// Whether everything was delivered (or dropped for a counted reason) before the timeout.
    pub drained: bool,
}
