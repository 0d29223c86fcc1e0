//! The local warehouse: a SQLite database with one table, idempotent on the event id.
//!
//! ```sql
//! events(id TEXT PRIMARY KEY, name TEXT, timestamp TEXT, received_at TEXT,
//!        anonymous_id TEXT, user_id TEXT, source TEXT,
//!        data TEXT, context TEXT, envelope TEXT)   -- data, context, envelope: JSON
//! ```
//! Query it with SQLite's JSON functions, e.g. `SELECT json_extract(data, '$.square') FROM events`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, params};
use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Connector, Delivery, DeliveryFuture, Erasure, ErasureFuture, Failure, OutgoingEvent};
use crate::privacy::SubjectSet;

/// Writes batches into `events` with `INSERT … ON CONFLICT (id) DO NOTHING`.
pub struct SqliteConnector {
    connection: Arc<Mutex<Connection>>,
}

impl SqliteConnector {
    /// Opens (creating if needed) the warehouse database and its table.
    ///
    /// # Errors
    /// A message naming the file when it cannot be opened.
    pub fn open(path: &Path) -> Result<Self, String> {
        let failed = |error: rusqlite::Error| {
            format!(
                "cannot open the SQLite warehouse {}: {error}",
                path.display()
            )
        };
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)
                .map_err(|error| format!("cannot create {}: {error}", folder.display()))?;
        }
        let connection = Connection::open(path).map_err(failed)?;
        connection
            .busy_timeout(Duration::from_secs(5))
            .map_err(failed)?;
        connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| {
                row.get::<_, String>(0)
            })
            .map_err(failed)?;
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(failed)?;
        connection
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS events (
                     id TEXT PRIMARY KEY,
                     name TEXT NOT NULL,
                     timestamp TEXT,
                     received_at TEXT,
                     anonymous_id TEXT,
                     user_id TEXT,
                     source TEXT,
                     data TEXT NOT NULL,
                     context TEXT NOT NULL,
                     envelope TEXT NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS events_name_timestamp ON events (name, timestamp);",
            )
            .map_err(failed)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }
}

impl Connector for SqliteConnector {
    fn deliver<'a>(&'a self, events: &'a [OutgoingEvent]) -> DeliveryFuture<'a> {
        let connection = self.connection.clone();
        let events = events.to_vec();
        Box::pin(async move {
            let written = tokio::task::spawn_blocking(move || {
                let mut connection = connection
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                insert(&mut connection, &events)
            })
            .await;
            match written {
                Ok(Ok(())) => Delivery::Delivered,
                Ok(Err(failure)) => Delivery::Failed(failure),
                Err(error) => Delivery::Failed(Failure::retryable(format!(
                    "the warehouse writer stopped: {error}"
                ))),
            }
        })
    }

    fn erase<'a>(&'a self, subjects: &'a SubjectSet) -> ErasureFuture<'a> {
        let connection = self.connection.clone();
        let user_ids = json_list(&subjects.user_ids());
        let anonymous_ids = json_list(&subjects.anonymous_ids());
        Box::pin(async move {
            let erased = tokio::task::spawn_blocking(move || {
                let connection = connection
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                connection.execute(
                    "DELETE FROM events
                     WHERE user_id IN (SELECT value FROM json_each(?1))
                        OR anonymous_id IN (SELECT value FROM json_each(?2))",
                    params![user_ids, anonymous_ids],
                )
            })
            .await;
            match erased {
                Ok(Ok(rows)) => Erasure::Erased(rows as u64),
                Ok(Err(error)) => Erasure::Failed(format!("the warehouse delete failed: {error}")),
                Err(error) => Erasure::Failed(format!("the warehouse task stopped: {error}")),
            }
        })
    }
}

/// Ids as a JSON array, for `json_each`.
fn json_list(ids: &[&str]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

fn insert(connection: &mut Connection, events: &[OutgoingEvent]) -> Result<(), Failure> {
    let transaction = connection.transaction().map_err(|error| classify(&error))?;
    {
        let mut statement = transaction
            .prepare_cached(
                "INSERT INTO events (id, name, timestamp, received_at, anonymous_id, user_id, source, data, context, envelope)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (id) DO NOTHING",
            )
            .map_err(|error| classify(&error))?;
        for event in events {
            let columns: Columns<'_> = serde_json::from_str(&event.json).map_err(|error| {
                Failure::permanent(format!("event {} is not an envelope: {error}", event.id))
            })?;
            let json = |raw: Option<&RawValue>| raw.map_or("{}", RawValue::get).to_owned();
            statement
                .execute(params![
                    event.id,
                    event.name,
                    columns.timestamp,
                    columns.received_at,
                    columns.anonymous_id,
                    columns.user_id,
                    columns.source,
                    json(columns.data),
                    json(columns.context),
                    &*event.json,
                ])
                .map_err(|error| classify(&error))?;
        }
    }
    transaction.commit().map_err(|error| classify(&error))
}

/// The envelope fields the table has columns for, borrowed from its JSON (the rest is skipped
/// without being parsed into values).
#[derive(Deserialize)]
struct Columns<'a> {
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    received_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    anonymous_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    context: Option<&'a RawValue>,
}

/// A lost lock or a full disk may pass; a constraint violation will not.
fn classify(error: &rusqlite::Error) -> Failure {
    match error.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch) => {
            Failure::permanent(format!("the warehouse refused the events: {error}"))
        }
        _ => Failure::retryable(format!("the warehouse write failed: {error}")),
    }
}
