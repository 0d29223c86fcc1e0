//! Where the client keeps its queue: in memory, or in a SQLite file that survives restarts.
//!
//! SQLite calls block, so the driver runs them on tokio's blocking pool, one at a time and in the
//! order the core emitted them.

#[cfg(feature = "sqlite")]
use std::sync::{Arc, Mutex};

use tributary_core::Work;
use tributary_core::store::{Loaded, Store, StoreError};

/// The queue's storage.
#[derive(Debug, Clone)]
pub(crate) enum QueueStore {
    /// Nothing survives the process.
    Memory,
    /// A SQLite file.
    #[cfg(feature = "sqlite")]
    Sqlite(Arc<Mutex<tributary_core::store::SqliteStore>>),
}

impl QueueStore {
    pub(crate) fn is_durable(&self) -> bool {
        !matches!(self, Self::Memory)
    }

    /// Reads what the store holds (called once, when the client is built).
    pub(crate) fn load(&self) -> Result<Loaded, StoreError> {
        self.with_store(|store| store.load())
            .unwrap_or_else(|| Ok(Loaded::default()))
    }

    /// Performs storage work on the blocking pool.
    pub(crate) async fn perform(&self, work: Work) -> Result<(), StoreError> {
        let store = self.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            store
                .with_store(|store| store.perform(&work))
                .unwrap_or(Ok(()))
        })
        .await;
        outcome.unwrap_or(Ok(()))
    }

    #[cfg_attr(not(feature = "sqlite"), allow(unused_variables))]
    fn with_store<T>(&self, action: impl FnOnce(&mut dyn Store) -> T) -> Option<T> {
        match self {
            Self::Memory => None,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(store) => {
                // A panic while holding the lock cannot leave SQLite half-written (transactions),
                // so a poisoned lock is still usable.
                let mut guard = store
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                Some(action(&mut *guard))
            }
        }
    }
}
