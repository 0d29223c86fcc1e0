//! Where the client reads the time: the system clock, or (feature `test-clock`) a
//! `ManualClock` the tests move by hand from Kotlin or Python.
//!
//! The core never reads a clock; every timestamp it sees (event time, flush interval, backoff,
//! give-up age) comes from here, so a manual clock drives all of them.

#[cfg(feature = "test-clock")]
use std::sync::Arc;
#[cfg(feature = "test-clock")]
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tributary_core::Timestamp;

/// The client's source of time.
#[derive(Debug, Clone)]
pub(crate) enum Clock {
    /// The system's wall clock.
    System,
    /// A clock moved by the tests.
    #[cfg(feature = "test-clock")]
    Manual(Arc<ManualClock>),
}

impl Clock {
    pub(crate) fn now(&self) -> Timestamp {
        match self {
            Self::System => {
                let millis = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis();
                Timestamp::from_unix_millis(u64::try_from(millis).unwrap_or(u64::MAX))
            }
            #[cfg(feature = "test-clock")]
            Self::Manual(clock) => Timestamp::from_unix_millis(clock.now_millis()),
        }
    }

    /// How long the driver may sleep before `at` in real time. A manual clock can jump at any
    /// moment, so the driver then looks again every few milliseconds.
    pub(crate) fn real_wait_until(&self, at: Timestamp) -> Duration {
        let wait = at.saturating_duration_since(self.now());
        match self {
            Self::System => wait,
            #[cfg(feature = "test-clock")]
            Self::Manual(_) => wait.min(Duration::from_millis(5)),
        }
    }
}

/// A clock that only moves when told (test builds only).
#[cfg(feature = "test-clock")]
#[derive(Debug, uniffi::Object)]
pub struct ManualClock {
    unix_millis: AtomicU64,
}

#[cfg(feature = "test-clock")]
#[uniffi::export]
impl ManualClock {
    /// A clock showing `unix_millis`.
    #[uniffi::constructor]
    pub fn new(unix_millis: u64) -> Arc<Self> {
        Arc::new(Self {
            unix_millis: AtomicU64::new(unix_millis),
        })
    }

    /// Moves the clock forward by `millis`.
    pub fn advance(&self, millis: u64) {
        self.unix_millis.fetch_add(millis, Ordering::SeqCst);
    }

    /// Sets the clock (backwards too, to test a clock that jumps back).
    pub fn set(&self, unix_millis: u64) {
        self.unix_millis.store(unix_millis, Ordering::SeqCst);
    }

    /// The time shown, in Unix milliseconds.
    pub fn now_millis(&self) -> u64 {
        self.unix_millis.load(Ordering::SeqCst)
    }
}
