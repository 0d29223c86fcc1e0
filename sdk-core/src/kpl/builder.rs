//! Building one aggregate.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use md5::{Digest, Md5};

use super::proto::{len_field_key, put_varint, varint_field_key, varint_len};
use super::{DIGEST_LEN, MAGIC};

/// Fields of `AggregatedRecord` and `Record`.
const PARTITION_KEY_TABLE: u8 = 1;
const EXPLICIT_HASH_KEY_TABLE: u8 = 2;
const RECORDS: u8 = 3;
const PARTITION_KEY_INDEX: u8 = 1;
const EXPLICIT_HASH_KEY_INDEX: u8 = 2;
const DATA: u8 = 3;

/// Builds one KPL aggregate, record by record, under a size limit.
///
/// Fields are written in field-number order, as protobuf serializers do (the partition key
/// table, the explicit hash key table, the records), so the bytes match the reference
/// aggregators' for the same records; each distinct key is stored once.
#[derive(Debug, Clone)]
pub struct AggregateBuilder {
    max_bytes: usize,
    /// Encoded fields 1 (the partition key table).
    partition_key_table: Vec<u8>,
    /// Encoded fields 2 (the explicit hash key table).
    explicit_hash_key_table: Vec<u8>,
    /// Encoded fields 3 (the records).
    records: Vec<u8>,
    partition_keys: KeyIndex,
    explicit_hash_keys: KeyIndex,
    count: usize,
}

impl AggregateBuilder {
    /// A builder whose aggregates hold at most `max_bytes` of Kinesis record data (magic,
    /// protobuf and MD5), unless a single record needs more.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            partition_key_table: Vec::new(),
            explicit_hash_key_table: Vec::new(),
            records: Vec::new(),
            partition_keys: KeyIndex::default(),
            explicit_hash_keys: KeyIndex::default(),
            count: 0,
        }
    }

    /// The size limit.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Records added since the last [`AggregateBuilder::finish`].
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no record was added since the last [`AggregateBuilder::finish`].
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The size of the aggregate [`AggregateBuilder::finish`] would return now.
    pub fn size_bytes(&self) -> usize {
        MAGIC.len()
            + self.partition_key_table.len()
            + self.explicit_hash_key_table.len()
            + self.records.len()
            + DIGEST_LEN
    }

    /// The size the aggregate would have with this record added.
    pub fn size_with(
        &self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data_len: usize,
    ) -> usize {
        let mut size = self.size_bytes();
        let mut record = 0;
        match self
            .partition_keys
            .get(partition_key, &self.partition_key_table)
        {
            Some(index) => record += 1 + varint_len(index),
            None => {
                size += table_entry_len(partition_key.len());
                record += 1 + varint_len(self.partition_keys.len());
            }
        }
        if let Some(key) = explicit_hash_key {
            match self
                .explicit_hash_keys
                .get(key, &self.explicit_hash_key_table)
            {
                Some(index) => record += 1 + varint_len(index),
                None => {
                    size += table_entry_len(key.len());
                    record += 1 + varint_len(self.explicit_hash_keys.len());
                }
            }
        }
        record += table_entry_len(data_len);
        size + table_entry_len(record)
    }

    /// Adds the record if the aggregate stays within the limit (or is empty, so that a record
    /// larger than the limit still gets an aggregate of its own); returns whether it was added.
    pub fn try_add(
        &mut self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data: &[u8],
    ) -> bool {
        if !self.is_empty()
            && self.size_with(partition_key, explicit_hash_key, data.len()) > self.max_bytes
        {
            return false;
        }
        self.add(partition_key, explicit_hash_key, data);
        true
    }

    /// Adds the record whatever the size.
    pub fn add(&mut self, partition_key: &str, explicit_hash_key: Option<&str>, data: &[u8]) {
        let partition_key_index = intern(
            &mut self.partition_keys,
            &mut self.partition_key_table,
            PARTITION_KEY_TABLE,
            partition_key,
        );
        let explicit_hash_key_index = explicit_hash_key.map(|key| {
            intern(
                &mut self.explicit_hash_keys,
                &mut self.explicit_hash_key_table,
                EXPLICIT_HASH_KEY_TABLE,
                key,
            )
        });
        let mut record_len = 1 + varint_len(partition_key_index) + table_entry_len(data.len());
        if let Some(index) = explicit_hash_key_index {
            record_len += 1 + varint_len(index);
        }
        let out = &mut self.records;
        out.reserve(1 + varint_len(record_len as u64) + record_len);
        out.push(len_field_key(RECORDS));
        put_varint(out, record_len as u64);
        out.push(varint_field_key(PARTITION_KEY_INDEX));
        put_varint(out, partition_key_index);
        if let Some(index) = explicit_hash_key_index {
            out.push(varint_field_key(EXPLICIT_HASH_KEY_INDEX));
            put_varint(out, index);
        }
        out.push(len_field_key(DATA));
        put_varint(out, data.len() as u64);
        out.extend_from_slice(data);
        self.count += 1;
    }

    /// Forgets every record added (for an aggregate that will not be sent as one).
    pub fn clear(&mut self) {
        self.partition_key_table.clear();
        self.explicit_hash_key_table.clear();
        self.records.clear();
        self.partition_keys.clear();
        self.explicit_hash_keys.clear();
        self.count = 0;
    }

    /// The aggregate (magic, protobuf, MD5); the builder is empty again.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size_bytes());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.partition_key_table);
        out.extend_from_slice(&self.explicit_hash_key_table);
        out.extend_from_slice(&self.records);
        let digest: [u8; DIGEST_LEN] = Md5::digest(&out[MAGIC.len()..]).into();
        out.extend_from_slice(&digest);
        self.clear();
        out
    }
}

/// Bytes of a length-delimited field of `len` bytes (one-byte key).
fn table_entry_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn intern(table: &mut KeyIndex, out: &mut Vec<u8>, field: u8, key: &str) -> u64 {
    if let Some(index) = table.get(key, out) {
        return index;
    }
    out.push(len_field_key(field));
    put_varint(out, key.len() as u64);
    table.insert(key, out.len());
    out.extend_from_slice(key.as_bytes());
    table.len() - 1
}

/// Finds a key already in a table without keeping a copy of it: a map from the key's FNV-1a
/// hash to its index, checked against the key's bytes in the encoded table. A second key with
/// the same hash (never in practice, possible on purpose: FNV is not collision-resistant) just
/// gets an entry of its own: the format allows a key to appear twice.
#[derive(Debug, Clone, Default)]
struct KeyIndex {
    by_hash: HashMap<u64, u64, BuildHasherDefault<IdentityHasher>>,
    /// Offset and length of each entry's bytes in the encoded table.
    entries: Vec<(usize, usize)>,
}

impl KeyIndex {
    fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    fn get(&self, key: &str, table: &[u8]) -> Option<u64> {
        let index = *self.by_hash.get(&fnv1a(key.as_bytes()))?;
        let (offset, len) = *self.entries.get(usize::try_from(index).ok()?)?;
        (table.get(offset..offset + len) == Some(key.as_bytes())).then_some(index)
    }

    /// Records a new entry whose bytes start at `offset` of the table.
    fn insert(&mut self, key: &str, offset: usize) {
        let index = self.len();
        self.by_hash.entry(fnv1a(key.as_bytes())).or_insert(index);
        self.entries.push((offset, key.len()));
    }

    fn clear(&mut self) {
        self.by_hash.clear();
        self.entries.clear();
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The map's keys are already hashes.
#[derive(Debug, Clone, Copy, Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 << 8) | u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}
