//! Compressed Kinesis records (optional, [`RecordCompression::Gzip`]): the producer gzips each
//! Kinesis record it puts — a KPL aggregate or a single user record — and a consumer inflates
//! it with [`decompress_record`] before de-aggregating. Envelope JSON shrinks 5–20× this way, so
//! one 25 KB PUT payload unit and one shard's 1 MiB/s carry that many more events.
//!
//! The format is what CloudWatch Logs subscriptions put in Kinesis: a gzip member (RFC 1952)
//! whose content is the record as it would otherwise be (`F3 89 9A C2`… for an aggregate).
//!
//! # Invariants
//! - A record that starts with the gzip magic `1F 8B` is gzip data; any other record is stored
//!   as it is. So the producer stores a record uncompressed only when compressing does not make
//!   it smaller *and* it does not start with `1F 8B` (such data is always compressed, so a
//!   consumer never mistakes it for a compressed record).
//! - [`decompress_record`] never inflates past [`MAX_INFLATED_RECORD_BYTES`] (a producer never
//!   compresses a record larger than Kinesis's record limit), so a hostile record cannot
//!   exhaust a consumer's memory; a broken or oversized one is an error, never a panic.

use std::borrow::Cow;
use std::io::{Read, Write};

use tributary_core::kpl;

/// Whether the producer compresses the Kinesis records it puts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordCompression {
    /// Records are KPL aggregates or raw user records, as the KPL writes them (the default: any
    /// KPL-aware consumer reads them).
    #[default]
    None,
    /// Each record is gzip data; consumers must inflate it first ([`decompress_record`]).
    Gzip,
}

/// The gzip magic that starts every compressed record.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The most bytes a compressed record may inflate to: Kinesis's record limit, the most a
/// producer ever compresses.
pub const MAX_INFLATED_RECORD_BYTES: usize = kpl::MAX_KINESIS_RECORD_BYTES;

/// Why a record that starts with the gzip magic cannot be inflated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecompressError {
    /// The gzip stream is broken (bad header, bad deflate data, bad CRC or length, truncated).
    #[error("a gzip record that cannot be inflated: {0}")]
    Corrupt(String),
    /// It inflates past [`MAX_INFLATED_RECORD_BYTES`].
    #[error("a gzip record that inflates past {MAX_INFLATED_RECORD_BYTES} bytes")]
    TooLarge,
}

/// Whether `data` is a compressed record.
pub fn is_compressed(data: &[u8]) -> bool {
    data.starts_with(&GZIP_MAGIC)
}

/// The record as the producer built it: inflated when it is gzip data, else `data` itself.
///
/// # Errors
/// [`DecompressError`] when a record that starts with `1F 8B` is not a whole gzip member or
/// inflates past [`MAX_INFLATED_RECORD_BYTES`].
pub fn decompress_record(data: &[u8]) -> Result<Cow<'_, [u8]>, DecompressError> {
    if !is_compressed(data) {
        return Ok(Cow::Borrowed(data));
    }
    let limit = MAX_INFLATED_RECORD_BYTES as u64;
    let mut inflated = Vec::with_capacity(data.len().saturating_mul(4).min(1 << 20));
    flate2::read::GzDecoder::new(data)
        .take(limit + 1)
        .read_to_end(&mut inflated)
        .map_err(|error| DecompressError::Corrupt(error.to_string()))?;
    if inflated.len() as u64 > limit {
        return Err(DecompressError::TooLarge);
    }
    Ok(Cow::Owned(inflated))
}

/// The data to put for a record built as `data` (see the invariants): gzip data, or `data`
/// when compressing does not pay and cannot be mistaken for it. Returns whether it compressed.
pub(crate) fn compress_record(data: Vec<u8>) -> (Vec<u8>, bool) {
    // Level 1: nearly the ratio of the default level on envelope JSON, at a fraction of the CPU.
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 32),
        flate2::Compression::fast(),
    );
    let compressed = encoder
        .write_all(&data)
        .and_then(|()| encoder.finish())
        .expect("writing into a Vec cannot fail");
    if compressed.len() < data.len() || is_compressed(&data) {
        (compressed, true)
    } else {
        (data, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_plain_ones_pass_through() {
        let json = br#"{"name":"login","context":{"library":{"name":"web"}}}"#.repeat(50);
        let (compressed, did) = compress_record(json.clone());
        assert!(did && is_compressed(&compressed) && compressed.len() < json.len() / 5);
        assert_eq!(decompress_record(&compressed).unwrap(), json.as_slice());
        assert!(matches!(
            decompress_record(b"{\"plain\":1}").unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_record_that_would_grow_stays_as_it_is_unless_it_looks_like_gzip() {
        let (kept, did) = compress_record(b"x".to_vec());
        assert!(!did);
        assert_eq!(kept, b"x");
        // Two bytes that look like gzip are always compressed, so they read back as themselves.
        let (compressed, did) = compress_record(GZIP_MAGIC.to_vec());
        assert!(did);
        assert_eq!(decompress_record(&compressed).unwrap(), &GZIP_MAGIC[..]);
    }

    #[test]
    fn broken_and_oversized_records_are_errors() {
        let (compressed, _) = compress_record(vec![b'a'; 10_000]);
        let truncated = &compressed[..compressed.len() - 6];
        assert!(matches!(
            decompress_record(truncated),
            Err(DecompressError::Corrupt(_))
        ));
        let mut bad_crc = compressed.clone();
        let at = bad_crc.len() - 8;
        bad_crc[at] ^= 0xff;
        assert!(matches!(
            decompress_record(&bad_crc),
            Err(DecompressError::Corrupt(_))
        ));
        assert!(matches!(
            decompress_record(&[0x1f, 0x8b, 0, 0]),
            Err(DecompressError::Corrupt(_))
        ));
        let (bomb, _) = compress_record(vec![0; MAX_INFLATED_RECORD_BYTES + 1]);
        assert!(bomb.len() < 10_000);
        assert_eq!(decompress_record(&bomb), Err(DecompressError::TooLarge));
        let (largest, _) = compress_record(vec![0; MAX_INFLATED_RECORD_BYTES]);
        assert_eq!(
            decompress_record(&largest).unwrap().len(),
            MAX_INFLATED_RECORD_BYTES
        );
    }
}
