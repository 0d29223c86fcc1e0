//! The KPL aggregation format: many user records in one Kinesis record, byte-compatible with
//! the Kinesis Producer Library (`aggregation-format.md` in awslabs/amazon-kinesis-producer)
//! and with the KCL and `aws-kinesis-agg` de-aggregators.
//!
//! ```text
//! F3 89 9A C2 | protobuf AggregatedRecord | MD5 of the protobuf bytes (16 bytes)
//!
//! message AggregatedRecord {              message Record {
//!   repeated string partition_key_table = 1;   required uint64 partition_key_index = 1;
//!   repeated string explicit_hash_key_table = 2; optional uint64 explicit_hash_key_index = 2;
//!   repeated Record records = 3;               required bytes data = 3;
//! }                                            repeated Tag tags = 4;   // key = 1, value = 2
//!                                            }
//! ```
//!
//! - [`AggregateBuilder`] builds one aggregate under a size limit (the KPL's default is
//!   [`DEFAULT_MAX_AGGREGATE_BYTES`]); each distinct partition key is stored once.
//! - [`deaggregate`] splits a Kinesis record into its user records: a record without the magic
//!   prefix is passed through as one user record; an aggregate whose MD5, protobuf or key
//!   indices are wrong is an error ([`KplError`]), never a panic and never a silent loss.
//! - [`partition_key_hash`] is Kinesis's hash key of a partition key (MD5 as a big-endian
//!   128-bit integer), which predicts the shard a record lands on.
//!
//! The protobuf code is a small hand-written encoder and decoder of these three messages (no
//! code generation, no `protoc`): the format is fixed and tiny, and hand-written parsing gives
//! every error a precise offset and cause, bounds every length by the input, and keeps this
//! module free of dependencies other than MD5, so the backend's router and the wasm build use it
//! as is.
//!
//! # Invariants
//! - Decoding never panics and never reads past its input, whatever the bytes (fuzzed by
//!   `sdk-core/fuzz`; the corpus is replayed by the `kpl_corpus` test).
//! - `decode(builder.finish())` returns exactly the records added, in order.
//! - An aggregate that [`AggregateBuilder::try_add`] accepted is at most the builder's limit
//!   in bytes, except an aggregate of one record, which may be as large as that record needs.

mod builder;
mod proto;

pub use builder::AggregateBuilder;

use md5::{Digest, Md5};

/// The four bytes every aggregate starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// The MD5 trailer's length.
pub const DIGEST_LEN: usize = 16;
/// The KPL's default `AggregationMaxSize`: 50 KiB of Kinesis record data.
pub const DEFAULT_MAX_AGGREGATE_BYTES: usize = 51_200;
/// Kinesis's limit on one record: data plus partition key, 1 MiB.
pub const MAX_KINESIS_RECORD_BYTES: usize = 1_048_576;
/// Kinesis's limit on a partition key, in Unicode characters.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// One user record: what a producer sent, and what de-aggregation gives back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRecord<'a> {
    /// The record's partition key.
    pub partition_key: &'a str,
    /// The record's explicit hash key (a decimal 128-bit integer), if it had one.
    pub explicit_hash_key: Option<&'a str>,
    /// The record's data.
    pub data: &'a [u8],
    /// Its index in the aggregate (`None` for a record that was not aggregated); with the
    /// Kinesis record's sequence number it identifies the user record, as the KCL's
    /// sub-sequence number does.
    pub sub_sequence_number: Option<u64>,
}

/// A decoded aggregate, borrowing from the bytes it was decoded from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregate<'a> {
    /// The partition keys the records point into.
    pub partition_keys: Vec<&'a str>,
    /// The explicit hash keys the records point into.
    pub explicit_hash_keys: Vec<&'a str>,
    /// The records, in order.
    pub records: Vec<Entry<'a>>,
}

/// One record of an [`Aggregate`], as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Index into [`Aggregate::partition_keys`].
    pub partition_key_index: u64,
    /// Index into [`Aggregate::explicit_hash_keys`].
    pub explicit_hash_key_index: Option<u64>,
    /// The record's data.
    pub data: &'a [u8],
    /// Tags (defined by the format, used by neither the KPL nor the KCL).
    pub tags: Vec<Tag<'a>>,
}

/// A tag of an [`Entry`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tag<'a> {
    /// The tag's key.
    pub key: &'a str,
    /// The tag's value.
    pub value: Option<&'a str>,
}

/// Why a Kinesis record could not be de-aggregated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KplError {
    /// [`decode`] was given data that does not start with [`MAGIC`].
    #[error("not a KPL aggregate: the data does not start with the magic bytes F3 89 9A C2")]
    BadMagic,
    /// The data starts with the magic bytes but is too short to hold the MD5 trailer.
    #[error("KPL aggregate of {len} bytes is too short for the magic bytes and the 16-byte MD5")]
    TooShort {
        /// The data's length.
        len: usize,
    },
    /// The MD5 trailer does not match the protobuf bytes.
    #[error("KPL aggregate MD5 mismatch: trailer {expected}, computed {actual}")]
    BadChecksum {
        /// The trailer, in hex.
        expected: String,
        /// The MD5 of the protobuf bytes, in hex.
        actual: String,
    },
    /// The protobuf message ends in the middle of a field.
    #[error("KPL aggregate protobuf truncated at byte {offset}: {what}")]
    Truncated {
        /// Offset in the protobuf message.
        offset: usize,
        /// What was being read.
        what: &'static str,
    },
    /// The protobuf message is not an `AggregatedRecord`.
    #[error("KPL aggregate protobuf malformed at byte {offset}: {reason}")]
    Malformed {
        /// Offset in the protobuf message.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// A required field is absent.
    #[error("KPL aggregate: {message} #{index} has no {field}")]
    MissingField {
        /// `Record` or `Tag`.
        message: &'static str,
        /// Which one (0-based).
        index: usize,
        /// The missing field.
        field: &'static str,
    },
    /// A record points past the end of a key table.
    #[error(
        "KPL aggregate: record #{record} has {table} index {index}, but the table has {len} entries"
    )]
    IndexOutOfRange {
        /// The record (0-based).
        record: usize,
        /// `partition_key_table` or `explicit_hash_key_table`.
        table: &'static str,
        /// The index found.
        index: u64,
        /// The table's length.
        len: usize,
    },
    /// A `string` field is not UTF-8.
    #[error("KPL aggregate: {field} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field.
        field: &'static str,
        /// Offset in the protobuf message.
        offset: usize,
    },
}

/// Whether `data` starts with the aggregate magic bytes.
pub fn is_aggregate(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// Decodes an aggregate: checks the magic bytes, the MD5 trailer, the protobuf and every key
/// index.
///
/// # Errors
/// Any [`KplError`]; [`KplError::BadMagic`] when `data` is not an aggregate at all.
pub fn decode(data: &[u8]) -> Result<Aggregate<'_>, KplError> {
    if !is_aggregate(data) {
        return Err(KplError::BadMagic);
    }
    if data.len() < MAGIC.len() + DIGEST_LEN {
        return Err(KplError::TooShort { len: data.len() });
    }
    let (message, trailer) = data[MAGIC.len()..].split_at(data.len() - MAGIC.len() - DIGEST_LEN);
    let actual = md5(message);
    if actual[..] != trailer[..] {
        return Err(KplError::BadChecksum {
            expected: hex(trailer),
            actual: hex(&actual),
        });
    }
    let aggregate = proto::decode_aggregate(message)?;
    for (record, entry) in aggregate.records.iter().enumerate() {
        check_index(
            record,
            "partition_key_table",
            entry.partition_key_index,
            aggregate.partition_keys.len(),
        )?;
        if let Some(index) = entry.explicit_hash_key_index {
            check_index(
                record,
                "explicit_hash_key_table",
                index,
                aggregate.explicit_hash_keys.len(),
            )?;
        }
    }
    Ok(aggregate)
}

fn check_index(record: usize, table: &'static str, index: u64, len: usize) -> Result<(), KplError> {
    if usize::try_from(index).is_ok_and(|index| index < len) {
        Ok(())
    } else {
        Err(KplError::IndexOutOfRange {
            record,
            table,
            index,
            len,
        })
    }
}

/// Splits one Kinesis record (its partition key, explicit hash key and data) into the user
/// records it carries: the records of an aggregate, or the record itself when its data does not
/// start with the magic bytes.
///
/// Unlike the KCL and `aws-kinesis-agg`, which hand a record whose MD5 or protobuf is wrong to
/// the application as if it were plain data, this reports it: data starting with the magic bytes
/// was written as an aggregate, and passing it on would only move the failure downstream.
///
/// # Errors
/// Any [`KplError`] but [`KplError::BadMagic`].
pub fn deaggregate<'a>(
    partition_key: &'a str,
    explicit_hash_key: Option<&'a str>,
    data: &'a [u8],
) -> Result<Vec<UserRecord<'a>>, KplError> {
    if !is_aggregate(data) {
        return Ok(vec![UserRecord {
            partition_key,
            explicit_hash_key,
            data,
            sub_sequence_number: None,
        }]);
    }
    let aggregate = decode(data)?;
    let mut records = Vec::with_capacity(aggregate.records.len());
    for (index, entry) in (0u64..).zip(&aggregate.records) {
        // `decode` checked every index.
        let key = |table: &[&'a str], at: u64| {
            usize::try_from(at)
                .ok()
                .and_then(|at| table.get(at).copied())
        };
        records.push(UserRecord {
            partition_key: key(&aggregate.partition_keys, entry.partition_key_index)
                .unwrap_or_default(),
            explicit_hash_key: entry
                .explicit_hash_key_index
                .and_then(|at| key(&aggregate.explicit_hash_keys, at)),
            data: entry.data,
            sub_sequence_number: Some(index),
        });
    }
    Ok(records)
}

/// Kinesis's hash key of a partition key: the MD5 of its UTF-8 bytes as a big-endian 128-bit
/// integer. A record lands on the shard whose hash key range holds it.
pub fn partition_key_hash(partition_key: &str) -> u128 {
    u128::from_be_bytes(md5(partition_key.as_bytes()))
}

/// Parses an explicit hash key (a decimal integer in `0..2^128`).
pub fn parse_explicit_hash_key(key: &str) -> Option<u128> {
    if key.is_empty() || !key.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    key.parse().ok()
}

pub(crate) fn md5(bytes: &[u8]) -> [u8; 16] {
    Md5::digest(bytes).into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

#[cfg(test)]
mod tests;
