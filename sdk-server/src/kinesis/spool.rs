//! The optional durable spool: every accepted user record is written to sdk-core's SQLite store
//! before it is aggregated, and deleted once its outcome is known (put, or returned as failed).
//! What is left when the producer stops (records unsent at shutdown, or in flight when it was
//! killed) is sent by the next producer that opens the file.
//!
//! Payload of a stored record: `1` (format version), partition key length (u16 LE), partition
//! key, explicit hash key length (u8, `255` for none), explicit hash key, data.

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    use tributary_core::store::{Durability, SqliteStore, Store, StoreError, StoredRecord};

    use crate::Error;
    use crate::kinesis::Record;

    const VERSION: u8 = 1;
    const NO_HASH_KEY: u8 = 255;

    /// The spool's SQLite store.
    #[derive(Debug)]
    pub(crate) struct Spool {
        store: Arc<Mutex<SqliteStore>>,
        next_seq: u64,
    }

    impl Spool {
        /// Opens the file and returns what it holds (records left by an earlier producer).
        pub(crate) fn open(
            path: PathBuf,
            durability: Durability,
        ) -> Result<(Self, Vec<(u64, Record)>), Error> {
            let mut store = SqliteStore::open(path, durability)?;
            let loaded = store.load()?;
            if loaded.corrupt > 0 {
                tracing::warn!(
                    message = "spool: corrupt records skipped",
                    count = loaded.corrupt
                );
            }
            let next_seq = loaded.records.last().map_or(1, |record| record.seq + 1);
            let mut records = Vec::with_capacity(loaded.records.len());
            let mut unreadable = Vec::new();
            for stored in loaded.records {
                match decode(&stored.payload) {
                    Some(record) => records.push((stored.seq, record)),
                    None => unreadable.push(stored.seq),
                }
            }
            if !unreadable.is_empty() {
                tracing::warn!(
                    message = "spool: unreadable records deleted",
                    count = unreadable.len()
                );
                store.delete(&unreadable)?;
            }
            let spool = Self {
                store: Arc::new(Mutex::new(store)),
                next_seq,
            };
            Ok((spool, records))
        }

        /// Writes records in one transaction; returns the sequence number of each.
        pub(crate) async fn persist(
            &mut self,
            records: Vec<(&str, Option<&str>, &[u8])>,
        ) -> Result<Vec<u64>, StoreError> {
            let now = crate::driver::now();
            let mut seqs = Vec::with_capacity(records.len());
            let stored: Vec<StoredRecord> = records
                .into_iter()
                .map(|(key, hash_key, data)| {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    seqs.push(seq);
                    StoredRecord::new(seq, now, encode(key, hash_key, data))
                })
                .collect();
            self.with_store(move |store| store.persist(&stored)).await?;
            Ok(seqs)
        }

        pub(crate) async fn delete(&self, seqs: Vec<u64>) -> Result<(), StoreError> {
            self.with_store(move |store| store.delete(&seqs)).await
        }

        async fn with_store(
            &self,
            action: impl FnOnce(&mut SqliteStore) -> Result<(), StoreError> + Send + 'static,
        ) -> Result<(), StoreError> {
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || {
                let mut guard = store
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                action(&mut guard)
            })
            .await
            .unwrap_or_else(|error| {
                Err(StoreError::Encoding {
                    key: "spool".into(),
                    message: format!("store task failed: {error}"),
                })
            })
        }
    }

    fn encode(key: &str, hash_key: Option<&str>, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + key.len() + 40 + data.len());
        out.push(VERSION);
        // Partition keys are at most 256 characters (1 KiB) and explicit hash keys at most 39
        // digits: checked by `send`.
        out.extend_from_slice(&u16::try_from(key.len()).unwrap_or(u16::MAX).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        match hash_key {
            Some(hash_key) => {
                out.push(u8::try_from(hash_key.len()).unwrap_or(NO_HASH_KEY - 1));
                out.extend_from_slice(hash_key.as_bytes());
            }
            None => out.push(NO_HASH_KEY),
        }
        out.extend_from_slice(data);
        out
    }

    fn decode(payload: &[u8]) -> Option<Record> {
        let (&version, rest) = payload.split_first()?;
        if version != VERSION || rest.len() < 2 {
            return None;
        }
        let key_len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        let rest = &rest[2..];
        let key = std::str::from_utf8(rest.get(..key_len)?).ok()?.to_owned();
        let (&hash_len, rest) = rest.get(key_len..)?.split_first()?;
        let (hash_key, data) = if hash_len == NO_HASH_KEY {
            (None, rest)
        } else {
            let hash_len = usize::from(hash_len);
            let hash_key = std::str::from_utf8(rest.get(..hash_len)?).ok()?.to_owned();
            (Some(hash_key), rest.get(hash_len..)?)
        };
        Some(Record {
            partition_key: key,
            explicit_hash_key: hash_key,
            data: data.to_vec(),
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn payloads_round_trip() {
            for (key, hash_key, data) in [
                ("user-ünï", None, &b"{}"[..]),
                ("k", Some("12345"), &b""[..]),
            ] {
                let record = decode(&encode(key, hash_key, data)).unwrap();
                assert_eq!(record.partition_key, key);
                assert_eq!(record.explicit_hash_key.as_deref(), hash_key);
                assert_eq!(record.data, data);
            }
            assert!(decode(&[2, 0, 0]).is_none());
            assert!(decode(&[1, 9, 0, b'k']).is_none());
        }
    }
}

#[cfg(feature = "sqlite")]
pub(crate) use sqlite::Spool;

/// Without the `sqlite` feature there is no spool.
#[cfg(not(feature = "sqlite"))]
#[derive(Debug)]
pub(crate) enum Spool {}

#[cfg(not(feature = "sqlite"))]
impl Spool {
    pub(crate) async fn persist(
        &mut self,
        _records: Vec<(&str, Option<&str>, &[u8])>,
    ) -> Result<Vec<u64>, tributary_core::store::StoreError> {
        match *self {}
    }

    pub(crate) async fn delete(
        &self,
        _seqs: Vec<u64>,
    ) -> Result<(), tributary_core::store::StoreError> {
        match *self {}
    }
}
