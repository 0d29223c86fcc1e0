//! The embedded DLQ: `dlq.db` in the data dir, shared safely by `serve` and the `dlq` commands
//! (SQLite WAL with a busy timeout).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, params};

use super::message::DeadLetterMessage;

/// The DLQ's file name inside the data dir.
pub const DLQ_FILE: &str = "dlq.db";

/// A message in the local DLQ.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Its id in this DLQ.
    pub id: i64,
    /// The message.
    pub message: DeadLetterMessage,
    /// The body exactly as stored.
    pub body: String,
}

/// A row whose body does not parse: its id and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableMessage {
    /// Its id in this DLQ.
    pub id: i64,
    /// What is wrong with it.
    pub error: String,
}

/// A message as listed: readable, or not (listed anyway, so one bad row hides nothing).
pub type ListedMessage = Result<StoredMessage, UnreadableMessage>;

/// Why the DLQ failed.
#[derive(Debug, thiserror::Error)]
#[error("dead-letter queue {path}: {message}")]
pub struct DlqError {
    path: String,
    message: String,
}

/// The local DLQ.
#[derive(Clone)]
pub struct DeadLetterQueue {
    path: PathBuf,
    connection: Arc<Mutex<Connection>>,
}

impl DeadLetterQueue {
    /// Opens (creating if needed) the DLQ in `data_dir`.
    ///
    /// # Errors
    /// When the database cannot be opened.
    pub fn open(data_dir: &Path) -> Result<Self, DlqError> {
        let path = data_dir.join(DLQ_FILE);
        let failed = |error: &dyn std::fmt::Display| DlqError {
            path: path.display().to_string(),
            message: error.to_string(),
        };
        std::fs::create_dir_all(data_dir).map_err(|error| failed(&error))?;
        let connection = Connection::open(&path).map_err(|error| failed(&error))?;
        connection
            .busy_timeout(Duration::from_secs(10))
            .map_err(|error| failed(&error))?;
        connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| {
                row.get::<_, String>(0)
            })
            .map_err(|error| failed(&error))?;
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|error| failed(&error))?;
        connection
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS messages (
                     id INTEGER PRIMARY KEY AUTOINCREMENT,
                     destination TEXT NOT NULL,
                     body TEXT NOT NULL,
                     created_at INTEGER NOT NULL
                 );",
            )
            .map_err(|error| failed(&error))?;
        Ok(Self {
            path,
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    fn error(&self, error: impl std::fmt::Display) -> DlqError {
        DlqError {
            path: self.path.display().to_string(),
            message: error.to_string(),
        }
    }

    fn with<T>(
        &self,
        action: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, DlqError> {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        action(&connection).map_err(|error| self.error(error))
    }

    /// Adds a message durably.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn push(&self, message: &DeadLetterMessage) -> Result<i64, DlqError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        self.with(|connection| {
            connection.execute(
                "INSERT INTO messages (destination, body, created_at) VALUES (?1, ?2, ?3)",
                params![
                    message.destination,
                    message.to_json(),
                    i64::try_from(now).unwrap_or(i64::MAX)
                ],
            )?;
            Ok(connection.last_insert_rowid())
        })
    }

    /// Every message (of one destination, when given), oldest first. Bodies that do not parse
    /// are returned as errors beside the good ones, so one bad row cannot hide the rest.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn list(&self, destination: Option<&str>) -> Result<Vec<ListedMessage>, DlqError> {
        let rows: Vec<(i64, String)> = self.with(|connection| {
            let mut statement = connection.prepare(
                "SELECT id, body FROM messages WHERE (?1 IS NULL OR destination = ?1) ORDER BY id",
            )?;
            let rows = statement.query_map([destination], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        })?;
        Ok(rows
            .into_iter()
            .map(
                |(id, body)| match serde_json::from_str::<DeadLetterMessage>(&body) {
                    Ok(message) => Ok(StoredMessage { id, message, body }),
                    Err(error) => Err(UnreadableMessage {
                        id,
                        error: format!("message {id} does not parse: {error}"),
                    }),
                },
            )
            .collect())
    }

    /// Replaces a message's body (after a partial redrive).
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn replace(&self, id: i64, message: &DeadLetterMessage) -> Result<(), DlqError> {
        self.with(|connection| {
            connection
                .execute(
                    "UPDATE messages SET body = ?2 WHERE id = ?1",
                    params![id, message.to_json()],
                )
                .map(drop)
        })
    }

    /// Removes a message.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn delete(&self, id: i64) -> Result<(), DlqError> {
        self.with(|connection| {
            connection
                .execute("DELETE FROM messages WHERE id = ?1", [id])
                .map(drop)
        })
    }

    /// Removes every message (of one destination, when given); returns how many.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn purge(&self, destination: Option<&str>) -> Result<usize, DlqError> {
        self.with(|connection| {
            connection.execute(
                "DELETE FROM messages WHERE (?1 IS NULL OR destination = ?1)",
                [destination],
            )
        })
    }

    /// Removes the events `matches` picks (given each event's JSON) from every message, in one
    /// transaction: a message left without events is deleted, the others are rewritten.
    /// Returns (events removed, messages deleted). Unreadable messages are left as they are.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn erase_events(&self, matches: impl Fn(&str) -> bool) -> Result<(u64, u64), DlqError> {
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let erase = |connection: &mut Connection| -> rusqlite::Result<(u64, u64)> {
            let transaction = connection.transaction()?;
            let rows: Vec<(i64, String)> = {
                let mut statement = transaction.prepare("SELECT id, body FROM messages")?;
                let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let (mut events, mut messages) = (0u64, 0u64);
            for (id, body) in rows {
                let Ok(mut message) = serde_json::from_str::<DeadLetterMessage>(&body) else {
                    continue;
                };
                let before = message.events.len();
                message.events.retain(|event| !matches(event.get()));
                let removed = before - message.events.len();
                if removed == 0 {
                    continue;
                }
                events += removed as u64;
                if message.events.is_empty() {
                    transaction.execute("DELETE FROM messages WHERE id = ?1", [id])?;
                    messages += 1;
                } else {
                    transaction.execute(
                        "UPDATE messages SET body = ?2 WHERE id = ?1",
                        params![id, message.to_json()],
                    )?;
                }
            }
            transaction.commit()?;
            Ok((events, messages))
        };
        erase(&mut connection).map_err(|error| self.error(error))
    }

    /// Messages per destination.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn depth(&self) -> Result<BTreeMap<String, u64>, DlqError> {
        self.with(|connection| {
            let mut statement = connection
                .prepare("SELECT destination, COUNT(*) FROM messages GROUP BY destination")?;
            let rows = statement.query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })?;
            rows.map(|row| {
                row.map(|(destination, count)| (destination, u64::try_from(count).unwrap_or(0)))
            })
            .collect()
        })
    }
}
