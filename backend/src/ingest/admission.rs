//! Admission control: a bound on the request bytes waiting to be made durable.
//!
//! Each request takes permits for its body's bytes (after decompression) as soon as the body is
//! read, and holds them until the sink has answered: through parsing, validation and the wait for
//! the log's writer (or Kinesis). When the permits cannot be had at once, the request is shed:
//! `503` with `Retry-After`, nothing of it stored, counted in `tributary_ingest_shed_requests`.
//!
//! # Invariants
//! - The bodies, and the events parsed from them, held by requests past reading their body are at
//!   most `max_pending_bytes` of body in all, however many connections send at once: under
//!   overload the ingest sheds instead of queueing more work for the log.
//! - A shed request was never given to the sink: no event of it is stored, so the client's retry
//!   with the same ids is the only copy.
//! - Shedding never waits: an overloaded server answers fast, so clients back off sooner.
//! - A body being received is not counted; it is bounded per connection by `MAX_BODY_BYTES` and
//!   `body_timeout` (see [`super::body`]), and connections by `server.max_connections`. A request
//!   whose `Content-Length` is over the bytes free is shed before its body is read
//!   ([`Admission::check_room`]), so under overload shed requests' bodies are not buffered.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// The default bound: 16 bodies of the largest size (`MAX_BODY_BYTES`), 8 MiB.
pub const DEFAULT_MAX_PENDING_BYTES: u64 = 8 * 1024 * 1024;

/// The shared budget of pending body bytes.
#[derive(Debug, Clone)]
pub struct Admission {
    permits: Arc<Semaphore>,
    max_pending_bytes: u32,
}

/// A request's share of the budget, given back when dropped.
#[derive(Debug)]
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded {
    /// The bound, for the error message.
    pub max_pending_bytes: u32,
}

impl Admission {
    /// A budget of `max_pending_bytes` (at least one byte, at most `u32::MAX`).
    pub fn new(max_pending_bytes: u64) -> Self {
        let max_pending_bytes = u32::try_from(max_pending_bytes.max(1)).unwrap_or(u32::MAX);
        Self {
            permits: Arc::new(Semaphore::new(max_pending_bytes as usize)),
            max_pending_bytes,
        }
    }

    /// Takes `bytes` of the budget (an empty body takes one byte, so that it is counted too),
    /// or fails at once when they are not free.
    ///
    /// # Errors
    /// [`Overloaded`] when the pending bytes plus `bytes` would be over the bound.
    pub fn try_admit(&self, bytes: usize) -> Result<Admitted, Overloaded> {
        let wanted = u32::try_from(bytes.max(1)).unwrap_or(u32::MAX);
        match self.permits.clone().try_acquire_many_owned(wanted) {
            Ok(permit) => Ok(Admitted { _permit: permit }),
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => Err(self.overloaded()),
        }
    }

    /// Whether `bytes` are free now, without taking them: a request whose declared body would
    /// not fit is shed before its body is read.
    ///
    /// # Errors
    /// [`Overloaded`] when fewer than `bytes` (at least one) are free.
    pub fn check_room(&self, bytes: usize) -> Result<(), Overloaded> {
        if self.available() >= bytes.max(1) {
            Ok(())
        } else {
            Err(self.overloaded())
        }
    }

    fn overloaded(&self) -> Overloaded {
        Overloaded {
            max_pending_bytes: self.max_pending_bytes,
        }
    }

    /// Bytes free now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_bound_and_frees_on_drop() {
        let admission = Admission::new(100);
        let first = admission.try_admit(60).unwrap();
        let second = admission.try_admit(40).unwrap();
        assert_eq!(
            admission.try_admit(1).unwrap_err(),
            Overloaded {
                max_pending_bytes: 100
            }
        );
        drop(first);
        assert_eq!(admission.available(), 60);
        let third = admission.try_admit(60).unwrap();
        drop((second, third));
        assert_eq!(admission.available(), 100);
    }

    #[test]
    fn a_request_over_the_whole_bound_is_refused() {
        let admission = Admission::new(10);
        assert!(admission.try_admit(11).is_err());
        assert_eq!(admission.available(), 10);
    }

    #[test]
    fn room_is_checked_without_taking_it() {
        let admission = Admission::new(100);
        let held = admission.try_admit(70).unwrap();
        assert!(admission.check_room(30).is_ok());
        assert!(admission.check_room(31).is_err());
        assert_eq!(admission.available(), 30);
        drop(held);
        assert!(admission.check_room(100).is_ok());
    }

    #[test]
    fn an_empty_body_takes_one_byte() {
        let admission = Admission::new(1);
        let held = admission.try_admit(0).unwrap();
        assert!(admission.try_admit(0).is_err());
        drop(held);
        assert!(admission.try_admit(0).is_ok());
    }
}
