//! The durable store for mobile apps and servers: one SQLite database in WAL mode.
//!
//! Schema (`PRAGMA user_version = 1`):
//! `records(seq INTEGER PRIMARY KEY, enqueued_at INTEGER, payload BLOB, checksum INTEGER)` and
//! `meta(key TEXT PRIMARY KEY, value TEXT)`. `checksum` is the CRC-32 of `seq` and
//! `enqueued_at` (8 bytes little-endian each) followed by `payload`.
//!
//! # Invariants
//! - `persist` commits one transaction; once it returns `Ok` the records survive `kill -9`
//!   ([`Durability::ProcessCrash`]: the WAL is in the OS page cache) or also power loss
//!   ([`Durability::PowerLoss`]: the WAL is fsynced at every commit).
//! - A row whose checksum does not match, or that SQLite cannot read, is skipped by `load`,
//!   counted in [`Loaded::corrupt`] and deleted; never fatal.
//! - A file SQLite reports as corrupt or not a database is moved aside to
//!   `<file>.corrupt-<unix millis>`; the intact records it still yields are carried over into a
//!   fresh database and the rest counted as corrupt.
//! - One process opens a given file at a time; SQLite's locking makes a second writer wait.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};

use super::{Loaded, Store, StoreError, StoredRecord, read_retry_state};
use crate::Timestamp;

/// What a confirmed write survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// A process crash (`kill -9`, an abort): `synchronous = NORMAL`, fast.
    #[default]
    ProcessCrash,
    /// Also power loss and OS crashes: `synchronous = FULL`, an fsync per commit.
    PowerLoss,
}

/// The SQLite (WAL) store.
#[derive(Debug)]
pub struct SqliteStore {
    connection: Connection,
    path: PathBuf,
    /// Records recovered from a corrupt file at open, handed out by the first `load`.
    salvaged: Option<Loaded>,
}

const SCHEMA_VERSION: i64 = 1;

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    ///
    /// # Errors
    /// When the file cannot be created or opened for a reason other than corruption (corrupt
    /// files are moved aside, see the module docs).
    pub fn open(path: impl AsRef<Path>, durability: Durability) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        match Self::open_checked(&path, durability) {
            Ok(store) => Ok(store),
            Err(error) if is_corruption(&error) => {
                let quarantined = quarantine(&path)?;
                let salvaged = salvage(&quarantined);
                let mut store = Self::open_checked(&path, durability)?;
                store.salvaged = Some(salvaged);
                Ok(store)
            }
            Err(error) => Err(error),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_checked(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        let wrap = |source| sqlite_error(path, source);
        let connection = Connection::open(path).map_err(wrap)?;
        connection
            .busy_timeout(Duration::from_secs(5))
            .map_err(wrap)?;
        let mode: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(wrap)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Encoding {
                key: "journal_mode".into(),
                message: format!("SQLite refused WAL mode (got {mode})"),
            });
        }
        let synchronous = match durability {
            Durability::ProcessCrash => "NORMAL",
            Durability::PowerLoss => "FULL",
        };
        connection
            .pragma_update(None, "synchronous", synchronous)
            .map_err(wrap)?;
        let check: String = connection
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(wrap)?;
        if check != "ok" {
            return Err(sqlite_error(
                path,
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                    Some(check),
                ),
            ));
        }
        connection
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS records (
                     seq INTEGER PRIMARY KEY,
                     enqueued_at INTEGER NOT NULL,
                     payload BLOB NOT NULL,
                     checksum INTEGER NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
            )
            .map_err(wrap)?;
        connection
            .pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(wrap)?;
        Ok(Self {
            connection,
            path: path.to_path_buf(),
            salvaged: None,
        })
    }

    fn wrap(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| sqlite_error(&self.path, source)
    }
}

impl Store for SqliteStore {
    fn load(&mut self) -> Result<Loaded, StoreError> {
        let (mut records, bad_seqs, mut corrupt) =
            read_records(&self.connection).map_err(self.wrap())?;
        if !bad_seqs.is_empty() {
            self.delete(&bad_seqs)?;
            corrupt += bad_seqs.len();
        }
        if let Some(salvaged) = self.salvaged.take() {
            self.persist(&salvaged.records)?;
            corrupt += salvaged.corrupt;
            records.extend(salvaged.records);
            records.sort_by_key(|record| record.seq);
            records.dedup_by_key(|record| record.seq);
        }
        Ok(Loaded {
            records,
            corrupt,
            retry_state: read_retry_state(self)?,
        })
    }

    fn persist(&mut self, records: &[StoredRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let wrap = |source| sqlite_error(&path, source);
        let transaction = self.connection.transaction().map_err(wrap)?;
        {
            let mut insert = transaction
                .prepare_cached(
                    "INSERT OR REPLACE INTO records (seq, enqueued_at, payload, checksum)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(wrap)?;
            for record in records {
                insert
                    .execute(params![
                        to_sql_integer(record.seq),
                        to_sql_integer(record.enqueued_at.as_unix_millis()),
                        &record.payload[..],
                        i64::from(checksum(record.seq, record.enqueued_at, &record.payload)),
                    ])
                    .map_err(wrap)?;
            }
        }
        transaction.commit().map_err(wrap)
    }

    fn delete(&mut self, seqs: &[u64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let wrap = |source| sqlite_error(&path, source);
        let transaction = self.connection.transaction().map_err(wrap)?;
        {
            let mut delete = transaction
                .prepare_cached("DELETE FROM records WHERE seq = ?1")
                .map_err(wrap)?;
            for seq in seqs {
                delete.execute([to_sql_integer(*seq)]).map_err(wrap)?;
            }
        }
        transaction.commit().map_err(wrap)
    }

    fn meta(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        self.connection
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(self.wrap())
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.connection
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                [key, value],
            )
            .map(drop)
            .map_err(self.wrap())
    }
}

/// CRC-32 over `seq`, `enqueued_at` (little-endian) and the payload.
fn checksum(seq: u64, enqueued_at: Timestamp, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(&enqueued_at.as_unix_millis().to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Reads every row: the intact records, the sequence numbers of rows whose checksum fails, and
/// how many rows SQLite could not read at all (reading stops at the first such row).
fn read_records(
    connection: &Connection,
) -> Result<(Vec<StoredRecord>, Vec<u64>, usize), rusqlite::Error> {
    let mut statement = connection
        .prepare("SELECT seq, enqueued_at, payload, checksum FROM records ORDER BY seq")?;
    let mut rows = statement.query([])?;
    let (mut records, mut bad_seqs, mut unreadable) = (Vec::new(), Vec::new(), 0);
    loop {
        let row = match rows.next() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(error) if is_sqlite_corruption(&error) => {
                unreadable += 1;
                break;
            }
            Err(error) => return Err(error),
        };
        let seq = row.get::<_, i64>(0).map(from_sql_integer);
        let fields = (|| {
            Ok::<_, rusqlite::Error>((
                Timestamp::from_unix_millis(from_sql_integer(row.get::<_, i64>(1)?)),
                row.get::<_, Vec<u8>>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })();
        match (seq, fields) {
            (Ok(seq), Ok((enqueued_at, payload, stored)))
                if i64::from(checksum(seq, enqueued_at, &payload)) == stored =>
            {
                records.push(StoredRecord::new(seq, enqueued_at, payload));
            }
            (Ok(seq), _) => bad_seqs.push(seq),
            (Err(_), _) => unreadable += 1,
        }
    }
    Ok((records, bad_seqs, unreadable))
}

/// Moves a corrupt database (and its WAL and shared-memory files) aside.
fn quarantine(path: &Path) -> Result<PathBuf, StoreError> {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let target = PathBuf::from(format!("{}.corrupt-{millis}", path.display()));
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", path.display()));
        let to = PathBuf::from(format!("{}{suffix}", target.display()));
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::Io {
                    path: from.display().to_string(),
                    source,
                });
            }
        }
    }
    Ok(target)
}

/// Reads what can still be read from a quarantined file; at least one corrupt unit is counted
/// (the file was corrupt).
fn salvage(path: &Path) -> Loaded {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let read =
        Connection::open_with_flags(path, flags).and_then(|connection| read_records(&connection));
    match read {
        Ok((records, bad_seqs, unreadable)) => Loaded {
            records,
            corrupt: (bad_seqs.len() + unreadable).max(1),
            retry_state: None,
        },
        Err(_) => Loaded {
            records: Vec::new(),
            corrupt: 1,
            retry_state: None,
        },
    }
}

fn is_corruption(error: &StoreError) -> bool {
    matches!(error, StoreError::Sqlite { source, .. } if is_sqlite_corruption(source))
}

fn is_sqlite_corruption(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

fn sqlite_error(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

/// SQLite integers are signed; sequence numbers and Unix milliseconds stay far below 2^63.
fn to_sql_integer(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_sql_integer(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
