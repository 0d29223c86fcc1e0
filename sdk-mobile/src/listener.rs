//! What the app can observe: every delivery, drop, eviction, retry and pause, through a
//! [`DeliveryListener`] it implements (the SDK defaults' "reported" rule).
//!
//! # Invariants
//! - The listener is called on the client's driver thread, never under the client's lock, in
//!   the order things happened; a listener that panics or throws is ignored.
//! - Notifications wait only while a listener is set (at most [`MAX_PENDING`]; the counters of
//!   `stats()` count everything regardless).
//! - No event data reaches the listener: a dropped event's `detail` is the server's answer or
//!   the rule it broke, never the event's values.

use tributary_core::queue::{DropReason, QueueEvent};

/// The most notifications kept for the listener between two calls of the driver.
pub const MAX_PENDING: usize = 1024;

/// One thing that happened to queued events.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum DeliveryEvent {
    /// The ingest accepted a batch.
    Delivered {
        /// Events delivered.
        count: u64,
    },
    /// Events were dropped.
    Dropped {
        /// How many.
        count: u64,
        /// `invalid`, `rejected`, `permanent`, `too_large`, `expired` or `corrupt`.
        reason: String,
        /// The server's status and answer, or the rule broken.
        detail: String,
    },
    /// The queue was full: the oldest events were evicted.
    Evicted {
        /// How many.
        count: u64,
    },
    /// A batch failed with a retryable error and will be retried.
    RetryScheduled {
        /// Events waiting for the retry.
        count: u64,
        /// Failed uploads in a row, this one included.
        consecutive_failures: u32,
        /// The wait before the next attempt, in milliseconds.
        delay_millis: u64,
        /// The status or error that caused it.
        cause: String,
    },
    /// The ingest refused the write key (401/403): the queue keeps everything and waits.
    Paused {
        /// 401 or 403.
        status: u16,
        /// The next attempt, in Unix milliseconds.
        until_unix_millis: u64,
    },
}

impl From<QueueEvent> for DeliveryEvent {
    fn from(event: QueueEvent) -> Self {
        match event {
            QueueEvent::Delivered { count, .. } => Self::Delivered {
                count: count as u64,
            },
            QueueEvent::Dropped {
                count,
                reason,
                detail,
            } => Self::Dropped {
                count: count as u64,
                reason: reason.as_str().to_owned(),
                // The caller got the validation error already; its text may quote the event.
                detail: match reason {
                    DropReason::Invalid => "the event breaks an envelope rule".to_owned(),
                    _ => detail,
                },
            },
            QueueEvent::Evicted { count } => Self::Evicted {
                count: count as u64,
            },
            QueueEvent::RetryScheduled {
                count,
                consecutive_failures,
                delay,
                cause,
            } => Self::RetryScheduled {
                count: count as u64,
                consecutive_failures,
                delay_millis: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                cause,
            },
            QueueEvent::Paused { status, until } => Self::Paused {
                status,
                until_unix_millis: until.as_unix_millis(),
            },
        }
    }
}

/// Observes deliveries; implemented by the app. Return quickly: the driver thread waits for it.
#[uniffi::export(with_foreign)]
pub trait DeliveryListener: Send + Sync {
    /// Called once per notification, in order.
    fn on_event(&self, event: DeliveryEvent);
}
