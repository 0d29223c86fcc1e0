//! Retention of delivered records and expiry of remembered ids.

use std::time::Duration;

use rusqlite::params;
use tributary_core::Timestamp;

use super::LogError;
use super::reader::LogReader;
use super::schema::{from_sql, to_sql};

/// What one sweep removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SweepOutcome {
    /// Log records deleted.
    pub records: u64,
    /// Remembered ids forgotten.
    pub ids: u64,
}

/// Deletes records every one of `destinations` has committed past and that are older than
/// `retention`, and forgets ids older than `dedup_window`.
///
/// # Errors
/// When SQLite fails.
pub fn sweep(
    reader: &LogReader,
    destinations: &[String],
    now: Timestamp,
    retention: Duration,
    dedup_window: Duration,
) -> Result<SweepOutcome, LogError> {
    let sqlite = |error: rusqlite::Error| LogError::from_sqlite(&error);
    let mut safe_offset = reader.last_offset()?;
    for destination in destinations {
        safe_offset = safe_offset.min(reader.committed_offset(destination)?);
    }
    let cutoff = |window: Duration| {
        now.as_unix_millis()
            .saturating_sub(u64::try_from(window.as_millis()).unwrap_or(u64::MAX))
    };
    let records = reader
        .connection()
        .execute(
            "DELETE FROM log WHERE offset <= ?1 AND received_at < ?2",
            params![to_sql(safe_offset), to_sql(cutoff(retention))],
        )
        .map_err(sqlite)?;
    let ids = reader
        .connection()
        .execute(
            "DELETE FROM seen_ids WHERE received_at < ?1",
            params![to_sql(cutoff(dedup_window))],
        )
        .map_err(sqlite)?;
    Ok(SweepOutcome {
        records: from_sql(records as i64),
        ids: from_sql(ids as i64),
    })
}

/// Deletes every record whose envelope's `user_id` is one of `user_ids` or whose
/// `anonymous_id` is one of `anonymous_ids` (a privacy deletion); returns how many. Offsets and
/// the remembered ids are kept (an id is not personal data, and forgetting it would let a
/// client's retry store the event again).
///
/// # Errors
/// When SQLite fails.
pub fn erase_subjects(
    reader: &LogReader,
    user_ids: &[&str],
    anonymous_ids: &[&str],
) -> Result<u64, LogError> {
    let as_json = |ids: &[&str]| serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
    let erased = reader
        .connection()
        .execute(
            "DELETE FROM log
             WHERE json_extract(payload, '$.user_id') IN (SELECT value FROM json_each(?1))
                OR json_extract(payload, '$.anonymous_id') IN (SELECT value FROM json_each(?2))",
            params![as_json(user_ids), as_json(anonymous_ids)],
        )
        .map_err(|error| LogError::from_sqlite(&error))?;
    Ok(erased as u64)
}
