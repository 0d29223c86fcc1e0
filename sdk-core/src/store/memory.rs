//! A store in memory: for tests, for platforms that cannot persist, and as the reference the
//! durable stores are compared with.

use std::collections::{BTreeMap, HashMap};

use super::{Loaded, Store, StoreError, StoredRecord, read_retry_state};

/// Keeps records in memory; everything is lost with the process.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    records: BTreeMap<u64, StoredRecord>,
    meta: HashMap<String, String>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records are stored.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is stored.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The stored records, in sequence order.
    pub fn records(&self) -> impl Iterator<Item = &StoredRecord> {
        self.records.values()
    }
}

impl Store for MemoryStore {
    fn load(&mut self) -> Result<Loaded, StoreError> {
        Ok(Loaded {
            records: self.records.values().cloned().collect(),
            corrupt: 0,
            retry_state: read_retry_state(self)?,
        })
    }

    fn persist(&mut self, records: &[StoredRecord]) -> Result<(), StoreError> {
        for record in records {
            self.records.insert(record.seq, record.clone());
        }
        Ok(())
    }

    fn delete(&mut self, seqs: &[u64]) -> Result<(), StoreError> {
        for seq in seqs {
            self.records.remove(seq);
        }
        Ok(())
    }

    fn meta(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.meta.get(key).cloned())
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.meta.insert(key.to_owned(), value.to_owned());
        Ok(())
    }
}
