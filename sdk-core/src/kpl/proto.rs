//! The protobuf wire format of the three messages, by hand: varints and length-delimited
//! fields, unknown fields skipped, every length checked against the input.

use super::{Aggregate, Entry, KplError, Tag};

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;
const FIXED32: u8 = 5;

/// Bytes a varint of `value` takes.
pub(super) const fn varint_len(value: u64) -> usize {
    // 1 byte per started group of 7 bits; 0 still takes a byte.
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        // Truncation intended: the low 7 bits, with the continuation bit.
        out.push((value as u8 & 0x7F) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The key byte of a field (field numbers here are all below 16: one byte).
pub(super) const fn key(field: u8, wire_type: u8) -> u8 {
    (field << 3) | wire_type
}

pub(super) const fn len_field_key(field: u8) -> u8 {
    key(field, LENGTH_DELIMITED)
}

pub(super) const fn varint_field_key(field: u8) -> u8 {
    key(field, VARINT)
}

/// A cursor over one message's bytes; `base` is the message's offset in the whole protobuf, for
/// error messages.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    base: usize,
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8], usize),
    Skipped,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], base: usize) -> Self {
        Self { bytes, at: 0, base }
    }

    fn offset(&self) -> usize {
        self.base + self.at
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, KplError> {
        let start = self.offset();
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let Some(&byte) = self.bytes.get(self.at) else {
                return Err(KplError::Truncated {
                    offset: start,
                    what,
                });
            };
            self.at += 1;
            if shift == 63 && byte > 1 {
                return Err(KplError::Malformed {
                    offset: start,
                    reason: format!("{what}: varint overflows 64 bits"),
                });
            }
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(KplError::Malformed {
            offset: start,
            reason: format!("{what}: varint longer than 10 bytes"),
        })
    }

    fn take(&mut self, len: u64, what: &'static str) -> Result<(&'a [u8], usize), KplError> {
        let start = self.offset();
        let available = self.bytes.len() - self.at;
        match usize::try_from(len) {
            Ok(len) if len <= available => {
                let slice = &self.bytes[self.at..self.at + len];
                self.at += len;
                Ok((slice, start))
            }
            _ => Err(KplError::Truncated {
                offset: start,
                what,
            }),
        }
    }

    /// The next field's number and value, or `None` at the end of the message.
    fn field(&mut self, what: &'static str) -> Result<Option<(u64, Value<'a>)>, KplError> {
        if self.at == self.bytes.len() {
            return Ok(None);
        }
        let start = self.offset();
        let key = self.varint(what)?;
        let number = key >> 3;
        if number == 0 {
            return Err(KplError::Malformed {
                offset: start,
                reason: format!("{what}: field number 0"),
            });
        }
        // Three bits: always fits.
        let wire_type = (key & 7) as u8;
        let value = match wire_type {
            VARINT => Value::Varint(self.varint(what)?),
            LENGTH_DELIMITED => {
                let len = self.varint(what)?;
                let (bytes, at) = self.take(len, what)?;
                Value::Bytes(bytes, at)
            }
            FIXED64 => {
                self.take(8, what)?;
                Value::Skipped
            }
            FIXED32 => {
                self.take(4, what)?;
                Value::Skipped
            }
            other => {
                return Err(KplError::Malformed {
                    offset: start,
                    reason: format!("{what}: field {number} has unsupported wire type {other}"),
                });
            }
        };
        Ok(Some((number, value)))
    }
}

fn wrong_type(offset: usize, message: &str, number: u64) -> KplError {
    KplError::Malformed {
        offset,
        reason: format!("{message} field {number} has the wrong wire type"),
    }
}

fn utf8<'a>(bytes: &'a [u8], at: usize, field: &'static str) -> Result<&'a str, KplError> {
    std::str::from_utf8(bytes).map_err(|_| KplError::InvalidUtf8 { field, offset: at })
}

/// Decodes the `AggregatedRecord` message (without magic and MD5); key indices are not checked.
pub(super) fn decode_aggregate(message: &[u8]) -> Result<Aggregate<'_>, KplError> {
    let mut reader = Reader::new(message, 0);
    let mut aggregate = Aggregate::default();
    loop {
        let start = reader.offset();
        let Some((number, value)) = reader.field("AggregatedRecord field")? else {
            break;
        };
        match (number, value) {
            (1, Value::Bytes(bytes, at)) => {
                aggregate
                    .partition_keys
                    .push(utf8(bytes, at, "partition_key_table")?)
            }
            (2, Value::Bytes(bytes, at)) => {
                aggregate
                    .explicit_hash_keys
                    .push(utf8(bytes, at, "explicit_hash_key_table")?)
            }
            (3, Value::Bytes(bytes, at)) => {
                let index = aggregate.records.len();
                aggregate.records.push(decode_record(bytes, at, index)?);
            }
            (1..=3, _) => return Err(wrong_type(start, "AggregatedRecord", number)),
            _ => {}
        }
    }
    Ok(aggregate)
}

fn decode_record(bytes: &[u8], base: usize, index: usize) -> Result<Entry<'_>, KplError> {
    let mut reader = Reader::new(bytes, base);
    let mut partition_key_index = None;
    let mut entry = Entry::default();
    let mut data = None;
    loop {
        let start = reader.offset();
        let Some((number, value)) = reader.field("Record field")? else {
            break;
        };
        match (number, value) {
            (1, Value::Varint(value)) => partition_key_index = Some(value),
            (2, Value::Varint(value)) => entry.explicit_hash_key_index = Some(value),
            (3, Value::Bytes(bytes, _)) => data = Some(bytes),
            (4, Value::Bytes(bytes, at)) => {
                let tag = entry.tags.len();
                entry.tags.push(decode_tag(bytes, at, tag)?);
            }
            (1..=4, _) => return Err(wrong_type(start, "Record", number)),
            _ => {}
        }
    }
    let missing = |field| KplError::MissingField {
        message: "Record",
        index,
        field,
    };
    entry.partition_key_index =
        partition_key_index.ok_or_else(|| missing("partition_key_index"))?;
    entry.data = data.ok_or_else(|| missing("data"))?;
    Ok(entry)
}

fn decode_tag(bytes: &[u8], base: usize, index: usize) -> Result<Tag<'_>, KplError> {
    let mut reader = Reader::new(bytes, base);
    let mut key = None;
    let mut value = None;
    loop {
        let start = reader.offset();
        let Some((number, field)) = reader.field("Tag field")? else {
            break;
        };
        match (number, field) {
            (1, Value::Bytes(bytes, at)) => key = Some(utf8(bytes, at, "Tag.key")?),
            (2, Value::Bytes(bytes, at)) => value = Some(utf8(bytes, at, "Tag.value")?),
            (1..=2, _) => return Err(wrong_type(start, "Tag", number)),
            _ => {}
        }
    }
    Ok(Tag {
        key: key.ok_or(KplError::MissingField {
            message: "Tag",
            index,
            field: "key",
        })?,
        value,
    })
}
