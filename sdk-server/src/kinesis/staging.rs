//! The hand-over from `send` to the producer's task: each record is appended to a shared batch
//! (its partition key and data into one byte buffer, the rest into a small entry), and the task
//! takes the whole batch at once.
//!
//! # Invariants
//! - Once the buffers have grown, handing a record over allocates nothing: the task swaps the
//!   batch it takes for the one it emptied the time before, so both keep their capacity. (The
//!   task allocates the record's own copies itself, so that memory is allocated and freed on
//!   one thread, which glibc's allocator needs to stay fast.)
//! - The task is woken only when a record lands in an empty batch.
//! - A record is either in a batch the task takes (counted in `UserRecordsReceived` before the
//!   task can see it), or refused with [`Closed`]: once the staging is closed nothing more is
//!   accepted, and what a task that ended without taking it left behind is dropped (its handle
//!   resolves as unknown).

use std::sync::Mutex;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::handles::Reply;
use super::metrics::{Metrics, add};

/// The producer's task is gone or shutting down.
#[derive(Debug)]
pub(crate) struct Closed;

/// A user record waiting in a batch, without its bytes (they are in [`Batch`]'s buffer).
#[derive(Debug)]
pub(crate) struct Staged {
    pub(crate) explicit_hash_key: Option<String>,
    /// The hash key the record's shard is predicted from.
    pub(crate) hash: u128,
    /// When `send` accepted it.
    pub(crate) arrived: Instant,
    pub(crate) reply: Option<Reply>,
    /// Bytes it holds of the buffer's budget.
    pub(crate) buffer_bytes: usize,
    key_len: usize,
    data_len: usize,
}

impl Staged {
    pub(crate) fn new(
        explicit_hash_key: Option<String>,
        hash: u128,
        reply: Option<Reply>,
        buffer_bytes: usize,
    ) -> Self {
        Self {
            explicit_hash_key,
            hash,
            arrived: Instant::now(),
            reply,
            buffer_bytes,
            key_len: 0,
            data_len: 0,
        }
    }
}

/// Records handed over since the task last took them.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Each record's partition key, then its data, back to back.
    bytes: Vec<u8>,
    records: Vec<Staged>,
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Each record with its partition key and data. The records are gone afterwards; the
    /// bytes are cleared by the next [`Staging::take`] (both buffers keep their capacity).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (Staged, &str, &[u8])> {
        let bytes = &self.bytes;
        let mut offset = 0;
        self.records.drain(..).map(move |record| {
            let key_end = offset + record.key_len;
            let data_end = key_end + record.data_len;
            // Written by `Staging::push` from a `&str` and a slice: always in range and UTF-8.
            let key = bytes
                .get(offset..key_end)
                .and_then(|key| std::str::from_utf8(key).ok())
                .unwrap_or_default();
            let data = bytes.get(key_end..data_end).unwrap_or_default();
            offset = data_end;
            (record, key, data)
        })
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
    }
}

#[derive(Debug, Default)]
struct State {
    batch: Batch,
    closed: bool,
}

/// The batch `send` appends to and the task takes.
#[derive(Debug, Default)]
pub(crate) struct Staging {
    state: Mutex<State>,
    wake: Notify,
}

impl Staging {
    /// Appends a record (counting it as received), or refuses it once closed.
    pub(crate) fn push(
        &self,
        partition_key: &str,
        data: &[u8],
        mut record: Staged,
        metrics: &Metrics,
    ) -> Result<(), Closed> {
        record.key_len = partition_key.len();
        record.data_len = data.len();
        let was_empty = {
            let mut state = self.lock();
            if state.closed {
                return Err(Closed);
            }
            let batch = &mut state.batch;
            batch.bytes.extend_from_slice(partition_key.as_bytes());
            batch.bytes.extend_from_slice(data);
            batch.records.push(record);
            // Counted before the task can take it, so that `pending` never goes below zero.
            add(&metrics.user_records_received, 1);
            batch.records.len() == 1
        };
        if was_empty {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Swaps the waiting records into `into`, which must be empty.
    pub(crate) fn take(&self, into: &mut Batch) {
        debug_assert!(into.is_empty());
        into.clear();
        let mut state = self.lock();
        if !state.batch.is_empty() {
            std::mem::swap(&mut state.batch, into);
        }
    }

    /// Refuses every record from now on.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
    }

    /// Closes and drops whatever is waiting (for a task that ends without taking it).
    pub(crate) fn close_and_discard(&self) {
        let discarded = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.batch)
        };
        drop(discarded);
    }

    /// Resolves once a record has landed in an empty batch since the last call.
    pub(crate) async fn landed(&self) {
        self.wake.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hands_records_over_in_order_and_refuses_them_once_closed() {
        let staging = Staging::default();
        let metrics = Metrics::default();
        let staged = |hash| Staged::new(None, hash, None, 0);
        staging.push("k1", b"first", staged(1), &metrics).unwrap();
        staging.push("key-2", b"", staged(2), &metrics).unwrap();
        // The first record into an empty batch woke the task.
        staging.landed().await;
        let mut batch = Batch::default();
        staging.take(&mut batch);
        let taken: Vec<(u128, String, Vec<u8>)> = batch
            .drain()
            .map(|(record, key, data)| (record.hash, key.to_owned(), data.to_vec()))
            .collect();
        assert_eq!(
            taken,
            [
                (1, "k1".to_owned(), b"first".to_vec()),
                (2, "key-2".to_owned(), Vec::new())
            ]
        );
        assert!(batch.is_empty());
        staging.push("k3", b"third", staged(3), &metrics).unwrap();
        staging.take(&mut batch);
        let (record, key, data) = batch.drain().next().unwrap();
        assert_eq!((record.hash, key, data), (3, "k3", &b"third"[..]));
        staging.close();
        assert!(staging.push("k4", b"x", staged(4), &metrics).is_err());
        assert_eq!(
            metrics
                .user_records_received
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
    }
}
