//! The embedded durable log: local mode's stand-in for a Kinesis stream.
//!
//! One SQLite database in WAL mode (`log.db` in the data dir) holds the accepted events in
//! arrival order (`offset`), the ids seen within the dedup window, and each destination's
//! committed offset. One writer thread appends, and writes the offsets destinations commit; any
//! number of readers follow.
//!
//! - [`schema`]: the tables, pragmas and record checksum.
//! - [`writer`]: appends with group commit: concurrent requests share one transaction and one
//!   fsync.
//! - [`reader`]: reading records after an offset, and committing offsets.
//! - [`maintenance`]: retention of delivered records and expiry of remembered ids.
//! - [`salvage`]: a damaged file found at start is reported, moved aside, and what it still
//!   holds is kept.
//!
//! # Invariants
//! - `append` answers `Ok` only after its transaction committed with `synchronous = FULL`: an
//!   accepted event survives `kill -9` and power loss.
//! - An id accepted within `dedup_window` is not stored again; the second request still learns
//!   that the event was accepted.
//! - Offsets only grow. A destination's committed offset `N` means every record with offset ≤ N
//!   was delivered to it or dead-lettered; after a crash, delivery resumes at `N + 1`, so records
//!   delivered after the last commit are delivered again (at-least-once).
//! - A record whose checksum fails is reported and skipped by readers, never fatal; a file whose
//!   structure is damaged is salvaged at open ([`salvage`]), never fatal either.
//! - Records are deleted only when every destination has committed past them and they are older
//!   than `retention`.

pub mod maintenance;
pub mod reader;
pub mod salvage;
pub mod schema;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tributary_core::Timestamp;

pub use reader::LogReader;
pub use writer::LogWriter;

#[cfg(test)]
mod tests;

/// The log's file name inside the data dir.
pub const LOG_FILE: &str = "log.db";

/// An event the ingest accepted, ready to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingEvent {
    /// The event id (the dedup key).
    pub id: String,
    /// The event name (for routing without parsing).
    pub name: String,
    /// `anonymous_id`, else `user_id`, else `id`.
    pub partition_key: String,
    /// When the ingest received it.
    pub received_at: Timestamp,
    /// The envelope's JSON.
    pub json: String,
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its place in the log, from 1.
    pub offset: u64,
    /// The event id.
    pub id: String,
    /// The event name.
    pub name: String,
    /// The ordering key.
    pub partition_key: String,
    /// When the ingest received it.
    pub received_at: Timestamp,
    /// The envelope's JSON.
    pub json: Arc<str>,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppendOutcome {
    /// Events stored.
    pub appended: usize,
    /// Events whose id was accepted before, within the dedup window (not stored again).
    pub duplicates: usize,
}

/// Why the log cannot take or give events.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// The log is full (`storage.max_log_bytes`, or the disk).
    #[error("the event log is full: {0}")]
    Full(String),
    /// SQLite or the file system failed.
    #[error("the event log failed: {0}")]
    Storage(String),
    /// The writer has stopped (shutting down).
    #[error("the event log is closed")]
    Closed,
    /// AWS mode: the Kinesis stream did not take every event in time.
    #[error("the event stream is unavailable: {0}")]
    Stream(String),
}

impl LogError {
    pub(crate) fn from_sqlite(error: &rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Self::Full(error.to_string()),
            _ => Self::Storage(error.to_string()),
        }
    }
}

/// Settings of the log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// How long accepted ids are remembered.
    pub dedup_window: Duration,
    /// How long delivered records are kept.
    pub retention: Duration,
    /// The most bytes the database may take (0 = unlimited).
    pub max_bytes: u64,
}

/// The log: a writer handle, and the means to open readers.
#[derive(Clone)]
pub struct EventLog {
    path: PathBuf,
    writer: LogWriter,
    appended: watch::Receiver<u64>,
    full: Arc<tokio::sync::Notify>,
}

impl EventLog {
    /// Opens (creating if needed) the log in `data_dir` and starts its writer thread.
    ///
    /// # Errors
    /// When the folder or database cannot be created or opened.
    pub fn open(data_dir: &Path, options: &LogOptions) -> Result<Self, LogError> {
        std::fs::create_dir_all(data_dir).map_err(|error| {
            LogError::Storage(format!("cannot create {}: {error}", data_dir.display()))
        })?;
        let path = data_dir.join(LOG_FILE);
        if let Some(report) = salvage::check_and_salvage(&path)? {
            let unreadable: Vec<String> = report
                .unreadable
                .iter()
                .map(|(first, last)| format!("{first}-{last}"))
                .collect();
            tracing::error!(
                message = "the event log was damaged: kept the records still readable",
                damage = %report.damage,
                records_kept = report.records,
                last_offset_kept = report.last_offset,
                unreadable_offsets = %unreadable.join(","),
                unreadable_tail = report.unreadable_tail,
                offsets_kept = report.offsets_kept,
                damaged_file = %report.moved_to.display(),
            );
        }
        let connection = schema::open(&path, schema::Role::Writer, options.max_bytes)?;
        let last_offset = schema::last_offset(&connection)?;
        let (appended_sender, appended) = watch::channel(last_offset);
        let offsets = schema::open(&path, schema::Role::Reader, 0)?;
        let writer = LogWriter::start(connection, offsets, options.dedup_window, appended_sender)?;
        Ok(Self {
            path,
            writer,
            appended,
            full: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Appends events durably (group commit); see the module invariants.
    ///
    /// # Errors
    /// [`LogError::Full`] when out of space, [`LogError::Storage`] on I/O failure,
    /// [`LogError::Closed`] after shutdown. Nothing of the request is stored then.
    pub async fn append(&self, events: Vec<IncomingEvent>) -> Result<AppendOutcome, LogError> {
        let outcome = self.writer.append(events).await;
        if matches!(outcome, Err(LogError::Full(_))) {
            self.full.notify_one();
        }
        outcome
    }

    /// Signalled when an append is refused because the log is full (maintenance then sweeps
    /// at once instead of at its next interval).
    pub fn full_signal(&self) -> Arc<tokio::sync::Notify> {
        self.full.clone()
    }

    /// A new reader with its own connection.
    ///
    /// # Errors
    /// When the database cannot be opened.
    pub fn reader(&self) -> Result<LogReader, LogError> {
        LogReader::open(&self.path, Some(self.writer.clone()))
    }

    /// The offset of the newest record (0 when empty); changes are signalled.
    pub fn appended(&self) -> watch::Receiver<u64> {
        self.appended.clone()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the writer after the appends already queued; waits for it.
    pub async fn close(&self) {
        self.writer.close().await;
    }
}
