//! The storage format, and the stores that perform the queue's storage work.
//!
//! A record is one queued event: a sequence number (its key and its order), the time it was
//! enqueued (for the give-up age) and the event's JSON. Stores also keep the queue's
//! [`RetryState`] and a few named values for the platform (the persisted identity).
//!
//! The queue never calls a store: it emits [`Work`], and the platform performs it, synchronously
//! through [`Store::perform`] (the stores here) or asynchronously (IndexedDB in the browser).
//!
//! # Invariants
//! - A record a store confirmed (`persist` returned `Ok`) is returned by every later `load` until
//!   it is deleted, whatever happened to the process in between (`kill -9` included).
//! - A record that cannot be read back intact is skipped and counted by `load`, never fatal.

mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::sync::Arc;

pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::{Durability, SqliteStore};

use crate::Timestamp;
use crate::queue::{RetryState, Work};

/// One queued event as it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The record's key and its place in the queue's order.
    pub seq: u64,
    /// When it was queued (for the give-up age).
    pub enqueued_at: Timestamp,
    /// The event's JSON.
    pub payload: Arc<[u8]>,
}

impl StoredRecord {
    /// A record as the queue keeps and stores it.
    pub fn new(seq: u64, enqueued_at: Timestamp, payload: Vec<u8>) -> Self {
        Self {
            seq,
            enqueued_at,
            payload: Arc::from(payload),
        }
    }
}

/// What a store held when it was opened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    /// The intact records, in sequence order.
    pub records: Vec<StoredRecord>,
    /// Records found torn or corrupt, skipped and removed.
    pub corrupt: usize,
    /// The saved retry state, if any.
    pub retry_state: Option<RetryState>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[cfg(feature = "sqlite")]
    #[error("SQLite store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A file operation failed.
    #[error("store file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A stored value could not be encoded or decoded.
    #[error("stored value {key}: {message}")]
    Encoding {
        /// The value's name.
        key: String,
        /// What was wrong.
        message: String,
    },
}

/// A synchronous store for native platforms.
pub trait Store {
    /// Reads everything back, skipping (and counting, and removing) corrupt records.
    ///
    /// # Errors
    /// When the storage cannot be read at all.
    fn load(&mut self) -> Result<Loaded, StoreError>;

    /// Writes records durably; `Ok` means they survive a crash.
    ///
    /// # Errors
    /// When the write failed; none of `records` may be relied on.
    fn persist(&mut self, records: &[StoredRecord]) -> Result<(), StoreError>;

    /// Removes the records with these sequence numbers (absent ones are ignored).
    ///
    /// # Errors
    /// When the delete failed; the records may come back on the next `load`.
    fn delete(&mut self, seqs: &[u64]) -> Result<(), StoreError>;

    /// Reads a named value the platform stored.
    ///
    /// # Errors
    /// When the storage cannot be read.
    fn meta(&mut self, key: &str) -> Result<Option<String>, StoreError>;

    /// Stores a named value (such as the identity) durably.
    ///
    /// # Errors
    /// When the write failed.
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError>;

    /// Performs the storage part of a [`Work`] item; other work is ignored.
    ///
    /// # Errors
    /// As the operation performed.
    fn perform(&mut self, work: &Work) -> Result<(), StoreError> {
        match work {
            Work::Persist(records) => self.persist(records),
            Work::Delete(seqs) => self.delete(seqs),
            Work::SaveRetryState(state) => {
                let json = serde_json::to_string(state).map_err(|error| StoreError::Encoding {
                    key: RETRY_STATE_KEY.into(),
                    message: error.to_string(),
                })?;
                self.set_meta(RETRY_STATE_KEY, &json)
            }
            Work::Upload(_) | Work::WaitUntil(_) | Work::Idle => Ok(()),
        }
    }
}

/// The meta key under which the retry state is kept.
pub const RETRY_STATE_KEY: &str = "retry_state";

/// Reads the retry state saved by [`Store::perform`]; an unreadable one is ignored (the queue
/// then starts without backoff, which loses nothing).
pub(crate) fn read_retry_state(store: &mut dyn Store) -> Result<Option<RetryState>, StoreError> {
    Ok(store
        .meta(RETRY_STATE_KEY)?
        .and_then(|json| serde_json::from_str(&json).ok()))
}
