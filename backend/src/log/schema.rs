//! The log's tables, pragmas and record checksum.
//!
//! ```sql
//! log(offset INTEGER PRIMARY KEY, id TEXT, name TEXT, partition_key TEXT,
//!     received_at INTEGER, payload TEXT, checksum INTEGER)
//! seen_ids(id TEXT PRIMARY KEY, received_at INTEGER)     -- the dedup window
//! offsets(destination TEXT PRIMARY KEY, offset INTEGER)  -- committed per destination
//! ```
//! `checksum` is the CRC-32 of `offset` (8 bytes little-endian), `id`, a 0 byte and `payload`.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::LogError;

/// SQLite's page size here; `max_bytes` becomes `max_page_count` in these units.
const PAGE_SIZE: i64 = 4096;

/// What a connection is for; it decides how much each commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Appends: every commit is fsynced (`synchronous = FULL`), so `200` means durable.
    Writer,
    /// Reads, retention sweeps, and offset commits (made by the writer thread through a
    /// connection of this role while it runs, by the reader's own after): `synchronous = NORMAL`
    /// (an offset lost to power failure only means a redelivery).
    Reader,
}

/// Opens the database with the log's pragmas and creates the tables.
pub(crate) fn open(path: &Path, role: Role, max_bytes: u64) -> Result<Connection, LogError> {
    let failed = |error: rusqlite::Error| LogError::Storage(format!("{}: {error}", path.display()));
    let connection = Connection::open(path).map_err(failed)?;
    connection
        .busy_timeout(Duration::from_secs(10))
        .map_err(failed)?;
    connection
        .pragma_update(None, "page_size", PAGE_SIZE)
        .map_err(failed)?;
    let mode: String = connection
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(failed)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(LogError::Storage(format!(
            "{}: SQLite refused WAL mode ({mode})",
            path.display()
        )));
    }
    let synchronous = match role {
        Role::Writer => "FULL",
        Role::Reader => "NORMAL",
    };
    connection
        .pragma_update(None, "synchronous", synchronous)
        .map_err(failed)?;
    if max_bytes > 0 {
        connection
            .pragma_update(
                None,
                "max_page_count",
                (to_sql(max_bytes) / PAGE_SIZE).max(16),
            )
            .map_err(failed)?;
    }
    connection
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS log (
                 offset INTEGER PRIMARY KEY,
                 id TEXT NOT NULL,
                 name TEXT NOT NULL,
                 partition_key TEXT NOT NULL,
                 received_at INTEGER NOT NULL,
                 payload TEXT NOT NULL,
                 checksum INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS seen_ids (
                 id TEXT PRIMARY KEY,
                 received_at INTEGER NOT NULL
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS offsets (
                 destination TEXT PRIMARY KEY,
                 offset INTEGER NOT NULL
             );",
        )
        .map_err(|error| LogError::from_sqlite(&error))?;
    Ok(connection)
}

/// The newest offset (0 for an empty log).
pub(crate) fn last_offset(connection: &Connection) -> Result<u64, LogError> {
    let offset: Option<i64> = connection
        .query_row("SELECT MAX(offset) FROM log", [], |row| row.get(0))
        .map_err(|error| LogError::from_sqlite(&error))?;
    Ok(offset
        .and_then(|offset| u64::try_from(offset).ok())
        .unwrap_or(0))
}

/// The checksum stored beside each record.
pub(crate) fn checksum(offset: u64, id: &str, payload: &str) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&offset.to_le_bytes());
    hasher.update(id.as_bytes());
    hasher.update(&[0]);
    hasher.update(payload.as_bytes());
    hasher.finalize()
}

/// SQLite integers are signed; offsets and Unix milliseconds stay far below 2^63.
pub(crate) fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The reverse of [`to_sql`]; negative values (never written) read as 0.
pub(crate) fn from_sql(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
