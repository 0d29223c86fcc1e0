//! Where each record's outcome travels from the producer's task to its [`RecordHandle`]: a
//! slot in a chunk of slots allocated for [`CHUNK_SLOTS`] records at a time (a `oneshot`
//! channel per record cost an allocation on the sending thread, freed on the task's, and a
//! cache miss per record when the outcome was decided; slots of one chunk sit side by side,
//! and records sent together are decided together).
//!
//! # Invariants
//! - A slot belongs to one record: one [`Reply`] (the task's end) and one [`RecordHandle`]
//!   (the caller's). The reply sends at most once; a reply dropped without sending resolves
//!   the handle as failed with [`FailureReason::Unknown`] (the task ended without an answer).
//! - A dropped handle frees its outcome at once and tells the reply (`is_closed`), so that the
//!   task need not build an outcome nobody waits for.
//! - A chunk is freed when its last reply and handle are gone.
//!
//! [`FailureReason::Unknown`]: super::FailureReason::Unknown

use std::cell::RefCell;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use super::outcome::{FailureReason, PutOutcome, RecordFailure, RecordHandle};

/// Records whose slots are allocated at once.
pub(crate) const CHUNK_SLOTS: usize = 64;

type Outcome = Result<PutOutcome, RecordFailure>;

#[derive(Debug, Default)]
enum Slot {
    /// Not decided; the waker of the handle's last poll.
    #[default]
    Waiting,
    Polled(Waker),
    /// Decided, not yet read (boxed: most handles are dropped unread, and a small slot keeps
    /// a chunk in few cache lines).
    Ready(Box<Outcome>),
    /// The reply was dropped without an answer.
    Abandoned,
    /// The handle read the outcome, or was dropped.
    Closed,
}

#[derive(Debug)]
struct Chunk {
    slots: Box<[Mutex<Slot>]>,
}

/// One slot of a chunk.
#[derive(Debug)]
struct SlotRef {
    chunk: Arc<Chunk>,
    index: usize,
}

impl SlotRef {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        // Nothing panics while holding the lock; a poisoned one is still consistent.
        self.chunk.slots[self.index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The task's end of a record's slot.
#[derive(Debug)]
pub(crate) struct Reply {
    slot: SlotRef,
}

impl Reply {
    /// Whether the handle is gone (nobody will read an outcome).
    pub(crate) fn is_closed(&self) -> bool {
        matches!(*self.slot.lock(), Slot::Closed)
    }

    /// Gives the handle its outcome (dropped if the handle is gone).
    pub(crate) fn send(self, outcome: Outcome) {
        let waker = {
            let mut slot = self.slot.lock();
            match std::mem::take(&mut *slot) {
                Slot::Closed => {
                    *slot = Slot::Closed;
                    return;
                }
                Slot::Polled(waker) => {
                    *slot = Slot::Ready(Box::new(outcome));
                    Some(waker)
                }
                _ => {
                    *slot = Slot::Ready(Box::new(outcome));
                    None
                }
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        let waker = {
            let mut slot = self.slot.lock();
            match std::mem::take(&mut *slot) {
                Slot::Waiting => {
                    *slot = Slot::Abandoned;
                    None
                }
                Slot::Polled(waker) => {
                    *slot = Slot::Abandoned;
                    Some(waker)
                }
                // Answered, or nobody waits.
                other => {
                    *slot = other;
                    None
                }
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The caller's end of a record's slot (inside [`RecordHandle`]).
#[derive(Debug)]
pub(crate) struct Receiver {
    slot: SlotRef,
}

impl Receiver {
    pub(crate) fn poll(&mut self, context: &mut Context<'_>) -> Poll<Outcome> {
        let mut slot = self.slot.lock();
        match std::mem::take(&mut *slot) {
            Slot::Ready(outcome) => {
                *slot = Slot::Closed;
                Poll::Ready(*outcome)
            }
            Slot::Waiting | Slot::Polled(_) => {
                *slot = Slot::Polled(context.waker().clone());
                Poll::Pending
            }
            // The task ended without answering (aborted with its runtime), or the outcome was
            // read already: nothing (more) is known of the record.
            Slot::Abandoned | Slot::Closed => {
                *slot = Slot::Closed;
                Poll::Ready(Err(RecordFailure {
                    reason: FailureReason::Unknown,
                    partition_key: String::new(),
                    data: Vec::new(),
                    attempts: Vec::new(),
                    persisted: false,
                }))
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let outcome = std::mem::replace(&mut *self.slot.lock(), Slot::Closed);
        // Freed outside the lock.
        drop(outcome);
    }
}

thread_local! {
    /// The chunk this thread hands slots out of, and its next free slot.
    static CURRENT: RefCell<Option<(Arc<Chunk>, usize)>> = const { RefCell::new(None) };
}

/// A new record's reply and handle.
pub(crate) fn channel() -> (Reply, RecordHandle) {
    let (chunk, index) = CURRENT.with(|current| {
        let mut current = current.borrow_mut();
        let (chunk, next) = match current.take() {
            Some((chunk, next)) if next < CHUNK_SLOTS => (chunk, next),
            _ => (
                Arc::new(Chunk {
                    slots: (0..CHUNK_SLOTS).map(|_| Mutex::default()).collect(),
                }),
                0,
            ),
        };
        *current = Some((chunk.clone(), next + 1));
        (chunk, next)
    });
    let reply = Reply {
        slot: SlotRef {
            chunk: chunk.clone(),
            index,
        },
    };
    let handle = RecordHandle {
        receiver: Receiver {
            slot: SlotRef { chunk, index },
        },
    };
    (reply, handle)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn put(sequence_number: &str) -> Outcome {
        Ok(PutOutcome {
            shard_id: "shard-0".into(),
            sequence_number: sequence_number.into(),
            sub_sequence_number: None,
            attempts: Vec::new(),
        })
    }

    #[tokio::test]
    async fn each_handle_gets_its_own_outcome_across_chunks() {
        let pairs: Vec<_> = (0..CHUNK_SLOTS * 2 + 3).map(|_| channel()).collect();
        let mut handles = Vec::new();
        for (index, (reply, handle)) in pairs.into_iter().enumerate() {
            assert!(!reply.is_closed());
            handles.push(tokio::spawn(handle));
            // Answered before and after the handle is polled.
            if index % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            reply.send(put(&index.to_string()));
        }
        for (index, handle) in handles.into_iter().enumerate() {
            let outcome = handle.await.unwrap().unwrap();
            assert_eq!(outcome.sequence_number, index.to_string());
        }
    }

    #[tokio::test]
    async fn a_dropped_reply_is_unknown_and_a_dropped_handle_is_closed() {
        let (reply, handle) = channel();
        let waiting = tokio::spawn(handle);
        tokio::time::sleep(Duration::from_millis(1)).await;
        drop(reply);
        let failure = waiting.await.unwrap().unwrap_err();
        assert_eq!(failure.reason, FailureReason::Unknown);

        let (reply, handle) = channel();
        drop(handle);
        assert!(reply.is_closed());
        reply.send(put("1"));
    }
}
