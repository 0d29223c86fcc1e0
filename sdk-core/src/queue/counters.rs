//! Counters for every way an event leaves the queue, and the notifications an app can observe.

use std::collections::VecDeque;
use std::time::Duration;

use super::work::UploadId;
use crate::Timestamp;

/// Why events were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The event broke an envelope rule and was never queued.
    Invalid,
    /// The server accepted the batch but rejected this event (a `rejected` entry).
    Rejected,
    /// The server answered the batch with a permanent 4xx.
    Permanent,
    /// A single event was still too large for the server (413).
    TooLarge,
    /// The event was older than the give-up age when its batch failed again.
    Expired,
    /// The stored record was torn or corrupt and could not be read back.
    Corrupt,
}

impl DropReason {
    /// Every reason, for exporting counters.
    pub const ALL: [DropReason; 6] = [
        Self::Invalid,
        Self::Rejected,
        Self::Permanent,
        Self::TooLarge,
        Self::Expired,
        Self::Corrupt,
    ];

    /// A stable `snake_case` name for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Rejected => "rejected",
            Self::Permanent => "permanent",
            Self::TooLarge => "too_large",
            Self::Expired => "expired",
            Self::Corrupt => "corrupt",
        }
    }
}

/// Events dropped, by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DropCounts {
    /// See [`DropReason::Invalid`].
    pub invalid: u64,
    /// See [`DropReason::Rejected`].
    pub rejected: u64,
    /// See [`DropReason::Permanent`].
    pub permanent: u64,
    /// See [`DropReason::TooLarge`].
    pub too_large: u64,
    /// See [`DropReason::Expired`].
    pub expired: u64,
    /// See [`DropReason::Corrupt`].
    pub corrupt: u64,
}

impl DropCounts {
    /// The count for one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::Invalid => self.invalid,
            DropReason::Rejected => self.rejected,
            DropReason::Permanent => self.permanent,
            DropReason::TooLarge => self.too_large,
            DropReason::Expired => self.expired,
            DropReason::Corrupt => self.corrupt,
        }
    }

    pub(crate) fn add(&mut self, reason: DropReason, count: usize) {
        let counter = match reason {
            DropReason::Invalid => &mut self.invalid,
            DropReason::Rejected => &mut self.rejected,
            DropReason::Permanent => &mut self.permanent,
            DropReason::TooLarge => &mut self.too_large,
            DropReason::Expired => &mut self.expired,
            DropReason::Corrupt => &mut self.corrupt,
        };
        *counter += count as u64;
    }

    /// Drops of events that had been queued (every reason but `Invalid` and `Corrupt`).
    pub fn after_enqueue(&self) -> u64 {
        self.rejected + self.permanent + self.too_large + self.expired
    }
}

/// What the queue has done since it was created.
///
/// `enqueued + restored == delivered + dropped.after_enqueue() + evicted + queued` holds at
/// every moment, where `queued` is [`super::DeliveryQueue::len`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Events accepted by `enqueue`.
    pub enqueued: u64,
    /// Events read back from the store at start-up.
    pub restored: u64,
    /// Events the server accepted.
    pub delivered: u64,
    /// Events put back for another attempt after a retryable failure, 401/403 or 413 split.
    pub retried: u64,
    /// Events evicted, oldest first, because the queue was full.
    pub evicted: u64,
    /// Events dropped, by reason.
    pub dropped: DropCounts,
    /// Uploads handed to the platform.
    pub uploads: u64,
}

/// Something the app may want to observe (a callback or event on each platform).
#[derive(Debug, Clone, PartialEq)]
pub enum QueueEvent {
    /// The server accepted a batch.
    Delivered {
        /// The upload.
        upload: UploadId,
        /// Events delivered.
        count: usize,
    },
    /// Events were dropped.
    Dropped {
        /// How many.
        count: usize,
        /// Why.
        reason: DropReason,
        /// The server's or validator's words, for logs.
        detail: String,
    },
    /// The queue was full and the oldest events were evicted.
    Evicted {
        /// How many.
        count: usize,
    },
    /// A batch failed with a retryable error and will be retried.
    RetryScheduled {
        /// Events waiting for the retry.
        count: usize,
        /// Failed uploads in a row, this one included.
        consecutive_failures: u32,
        /// The wait before the next attempt.
        delay: Duration,
        /// The status or error that caused it.
        cause: String,
    },
    /// The write key was refused; the queue keeps its events and waits.
    Paused {
        /// 401 or 403.
        status: u16,
        /// The next attempt.
        until: Timestamp,
    },
}

/// Notifications not yet taken by the platform, oldest first; bounded so that an app that never
/// reads them does not grow memory (the counters still count everything).
#[derive(Debug, Default)]
pub(crate) struct Notifications {
    pending: VecDeque<QueueEvent>,
}

const MAX_PENDING_NOTIFICATIONS: usize = 1024;

impl Notifications {
    pub(crate) fn push(&mut self, event: QueueEvent) {
        if self.pending.len() == MAX_PENDING_NOTIFICATIONS {
            self.pending.pop_front();
        }
        self.pending.push_back(event);
    }

    pub(crate) fn take(&mut self) -> Vec<QueueEvent> {
        self.pending.drain(..).collect()
    }
}
