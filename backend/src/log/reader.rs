//! Reading the log after an offset, and the committed offsets of destinations.

use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use tributary_core::Timestamp;

use super::schema::{self, Role, checksum, from_sql, to_sql};
use super::writer::LogWriter;
use super::{LogError, LogRecord};

/// The offset upsert: an offset never moves back.
pub(super) const COMMIT_OFFSET_SQL: &str =
    "INSERT INTO offsets (destination, offset) VALUES (?1, ?2)
     ON CONFLICT (destination) DO UPDATE SET offset = MAX(offset, excluded.offset)";

/// A connection for reading records and committing offsets (blocking; use from a blocking task).
pub struct LogReader {
    connection: Connection,
    /// The running log's writer, which performs offset commits (see [`LogReader::commit_offset`]).
    writer: Option<LogWriter>,
}

/// A batch of records read, and the offsets skipped because their checksum failed.
#[derive(Debug, Default)]
pub struct ReadBatch {
    /// Intact records in offset order.
    pub records: Vec<LogRecord>,
    /// Offsets of corrupt records (skipped).
    pub corrupt: Vec<u64>,
    /// The greatest offset examined (the next read starts after it).
    pub last_examined: Option<u64>,
}

impl LogReader {
    pub(crate) fn open(path: &Path, writer: Option<LogWriter>) -> Result<Self, LogError> {
        Ok(Self {
            connection: schema::open(path, Role::Reader, 0)?,
            writer,
        })
    }

    /// Up to `limit` records with offsets greater than `after`, in order.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn read_after(&mut self, after: u64, limit: usize) -> Result<ReadBatch, LogError> {
        self.read(after, None, None, limit)
    }

    /// Up to `limit` records with offsets in `(after, upto]` and one of these `names` (every
    /// name when `None`), in order. SQLite skips the other names, so a destination that gets few
    /// of the events does not pay for reading them all. `last_examined` is `upto` when fewer
    /// than `limit` records came back (everything up to it was examined).
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn read_routed(
        &mut self,
        after: u64,
        upto: u64,
        names: Option<&[String]>,
        limit: usize,
    ) -> Result<ReadBatch, LogError> {
        let mut batch = self.read(after, Some(upto), names, limit)?;
        let returned = batch.records.len() + batch.corrupt.len();
        if returned < limit {
            batch.last_examined = Some(upto.max(after));
        }
        Ok(batch)
    }

    fn read(
        &mut self,
        after: u64,
        upto: Option<u64>,
        names: Option<&[String]>,
        limit: usize,
    ) -> Result<ReadBatch, LogError> {
        let sqlite = |error: rusqlite::Error| LogError::from_sqlite(&error);
        let name_filter = match names {
            Some(names) => format!(" AND name IN ({})", vec!["?"; names.len()].join(", ")),
            None => String::new(),
        };
        let sql = format!(
            "SELECT offset, id, name, partition_key, received_at, payload, checksum
             FROM log WHERE offset > ? AND offset <= ?{name_filter} ORDER BY offset LIMIT ?"
        );
        let mut statement = self.connection.prepare_cached(&sql).map_err(sqlite)?;
        let mut parameters: Vec<rusqlite::types::Value> = vec![
            to_sql(after).into(),
            to_sql(upto.unwrap_or(u64::MAX)).into(),
        ];
        parameters.extend(
            names
                .unwrap_or_default()
                .iter()
                .map(|name| name.clone().into()),
        );
        parameters.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
        let mut rows = statement
            .query(rusqlite::params_from_iter(parameters))
            .map_err(sqlite)?;
        let mut batch = ReadBatch::default();
        while let Some(row) = rows.next().map_err(sqlite)? {
            let offset = from_sql(row.get(0).map_err(sqlite)?);
            batch.last_examined = Some(offset);
            let fields = (|| {
                Ok::<_, rusqlite::Error>((
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, String>(5)?,
                    row.get::<_, i64>(6)?,
                ))
            })();
            match fields {
                Ok((id, name, partition_key, received_at, payload, stored))
                    if i64::from(checksum(offset, &id, &payload)) == stored =>
                {
                    batch.records.push(LogRecord {
                        offset,
                        id,
                        name,
                        partition_key,
                        received_at: Timestamp::from_unix_millis(from_sql(received_at)),
                        json: Arc::from(payload),
                    });
                }
                _ => batch.corrupt.push(offset),
            }
        }
        Ok(batch)
    }

    /// The offset `destination` committed (0 when it never did).
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn committed_offset(&self, destination: &str) -> Result<u64, LogError> {
        let offset: Option<i64> = self
            .connection
            .query_row(
                "SELECT offset FROM offsets WHERE destination = ?1",
                [destination],
                |row| row.get(0),
            )
            .optional()
            .map_err(|error| LogError::from_sqlite(&error))?;
        Ok(offset.map_or(0, from_sql))
    }

    /// Records that `destination` is done with every offset up to `offset` (never moves back).
    ///
    /// While the log's writer runs, the writer thread performs the commit (this call blocks until
    /// it is committed): a second thread writing to the log would wait for the write lock in
    /// SQLite's busy handler, which sleeps for up to 100 ms at a time while the writer is busy.
    /// Once the writer has stopped, this connection writes it.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn commit_offset(&self, destination: &str, offset: u64) -> Result<(), LogError> {
        if let Some(writer) = &self.writer {
            match writer.commit_offset_blocking(destination, offset) {
                Err(LogError::Closed) => {}
                result => return result,
            }
        }
        self.connection
            .execute(COMMIT_OFFSET_SQL, params![destination, to_sql(offset)])
            .map(drop)
            .map_err(|error| LogError::from_sqlite(&error))
    }

    /// The newest offset in the log (0 when empty).
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn last_offset(&self) -> Result<u64, LogError> {
        schema::last_offset(&self.connection)
    }

    /// The number of records, for status and tests.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn record_count(&self) -> Result<u64, LogError> {
        let count: i64 = self
            .connection
            .query_row("SELECT COUNT(*) FROM log", [], |row| row.get(0))
            .map_err(|error| LogError::from_sqlite(&error))?;
        Ok(from_sql(count))
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.connection
    }
}
