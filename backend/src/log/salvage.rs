//! A damaged log file found at start: detected, reported, and what it still holds kept.
//!
//! Before the log opens, `PRAGMA quick_check` verifies the database's structure. A damaged file
//! (a truncated copy, overwritten pages, a file that is not SQLite at all) is moved aside as
//! `log.db.damaged-<unix ms>` (with its `-wal` and `-shm`), the records still readable in it are
//! copied with their offsets, checksums and the destinations' committed offsets into a new
//! `log.db`, and the damage and the counts are logged at `error`.
//!
//! # Invariants
//! - The damaged file is never modified or deleted: an operator can still try sqlite3's
//!   `.recover` on it.
//! - Every record readable in the damaged file is kept. Records are read in offset order; where
//!   a page cannot be read, reading resumes at the next offset that can (probing ahead in
//!   doubling steps), and the offsets in between are reported as unreadable.
//! - The new `log.db` takes the old one's place by rename, only once it is complete; a crash
//!   during a salvage leaves the damaged file in place, and the next start salvages again.
//! - When the committed offsets cannot be read, every destination starts from the first kept
//!   record: kept records may be delivered again (destinations are idempotent on `id`), never
//!   skipped.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, params};

use super::LogError;
use super::schema::{self, Role};

/// Records copied per query.
const PAGE: i64 = 512;

/// What a salvage found and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalvageReport {
    /// What SQLite's check said (its first lines).
    pub damage: String,
    /// Records copied into the new log.
    pub records: u64,
    /// The highest offset kept (0 when none).
    pub last_offset: u64,
    /// Offset ranges (inclusive) that could not be read, between kept records.
    pub unreadable: Vec<(u64, u64)>,
    /// Whether the tail after the last kept record was unreadable (its length is unknown).
    pub unreadable_tail: bool,
    /// Whether the destinations' committed offsets were kept.
    pub offsets_kept: bool,
    /// Where the damaged file now is.
    pub moved_to: PathBuf,
}

/// A record as stored.
struct StoredRow {
    offset: i64,
    id: String,
    name: String,
    partition_key: String,
    received_at: i64,
    payload: String,
    checksum: i64,
}

/// Checks the log at `path`; when damaged, replaces it with what it still holds.
///
/// # Errors
/// When the file cannot be checked for another reason than damage (permissions, I/O), or the
/// new log cannot be written.
pub(crate) fn check_and_salvage(path: &Path) -> Result<Option<SalvageReport>, LogError> {
    if !path.exists() {
        return Ok(None);
    }
    let storage =
        |error: rusqlite::Error| LogError::Storage(format!("{}: {error}", path.display()));
    let damaged =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(storage)?;
    let damage = match quick_check(&damaged) {
        Ok(None) => return Ok(None),
        Ok(Some(damage)) => damage,
        Err(error) if is_damage(&error) => error.to_string(),
        Err(error) => return Err(storage(error)),
    };

    drop(damaged);
    let damage = damage.replace('\n', "; ");

    // Read from a copy whose header states the pages the file really has: SQLite refuses to
    // read anything from a file shorter than its header says.
    let copy = readable_copy(path)?;
    let (rows, unreadable, unreadable_tail, offsets) =
        match Connection::open_with_flags(&copy, OpenFlags::SQLITE_OPEN_READ_WRITE) {
            Ok(reading) => {
                let (rows, unreadable, tail) = readable_records(&reading);
                let offsets = read_offsets(&reading);
                (rows, unreadable, tail, offsets)
            }
            Err(_) => (Vec::new(), Vec::new(), true, None),
        };
    remove_with_companions(&copy);

    let salvage_path = sibling(path, ".salvage");
    remove_with_companions(&salvage_path);
    let mut fresh = schema::open(&salvage_path, Role::Writer, 0)?;
    let write =
        |error: rusqlite::Error| LogError::Storage(format!("{}: {error}", salvage_path.display()));
    let transaction = fresh.transaction().map_err(write)?;
    for row in &rows {
        transaction
            .execute(
                "INSERT INTO log (offset, id, name, partition_key, received_at, payload, checksum)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    row.offset,
                    row.id,
                    row.name,
                    row.partition_key,
                    row.received_at,
                    row.payload,
                    row.checksum
                ],
            )
            .map_err(write)?;
        transaction
            .execute(
                "INSERT OR IGNORE INTO seen_ids (id, received_at) VALUES (?1, ?2)",
                params![row.id, row.received_at],
            )
            .map_err(write)?;
    }
    if let Some(offsets) = &offsets {
        for (destination, offset) in offsets {
            transaction
                .execute(
                    "INSERT INTO offsets (destination, offset) VALUES (?1, ?2)",
                    params![destination, offset],
                )
                .map_err(write)?;
        }
    }
    transaction.commit().map_err(write)?;
    fresh.close().map_err(|(_, error)| write(error))?;

    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    let moved_to = sibling(path, &format!(".damaged-{stamp}"));
    let rename = |from: &Path, to: &Path| {
        std::fs::rename(from, to).map_err(|error| {
            LogError::Storage(format!(
                "cannot move {} to {}: {error}",
                from.display(),
                to.display()
            ))
        })
    };
    for suffix in ["-wal", "-shm"] {
        let companion = sibling(path, suffix);
        if companion.exists() {
            rename(&companion, &sibling(&moved_to, suffix))?;
        }
    }
    rename(path, &moved_to)?;
    rename(&salvage_path, path)?;

    Ok(Some(SalvageReport {
        damage,
        records: rows.len() as u64,
        last_offset: rows.last().map_or(0, |row| schema::from_sql(row.offset)),
        unreadable,
        unreadable_tail,
        offsets_kept: offsets.is_some(),
        moved_to,
    }))
}

/// A copy of the damaged file (and its WAL) cut to whole pages, with the header's page count
/// set to what the file holds.
fn readable_copy(path: &Path) -> Result<PathBuf, LogError> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let copy = sibling(path, ".reading");
    remove_with_companions(&copy);
    let failed = |error: std::io::Error| {
        LogError::Storage(format!(
            "cannot copy {} to salvage it: {error}",
            path.display()
        ))
    };
    std::fs::copy(path, &copy).map_err(failed)?;
    let wal = sibling(path, "-wal");
    if wal.exists() {
        std::fs::copy(&wal, sibling(&copy, "-wal")).map_err(failed)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&copy)
        .map_err(failed)?;
    let mut header = [0u8; 100];
    if file.read_exact(&mut header).is_err() {
        return Ok(copy);
    }
    // The page size is at byte 16 (big-endian; 1 means 65536); the page count at byte 28.
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        size if size >= 512 && size.is_power_of_two() => u64::from(size),
        _ => return Ok(copy),
    };
    let pages = file.metadata().map_err(failed)?.len() / page_size;
    file.set_len(pages * page_size).map_err(failed)?;
    file.seek(SeekFrom::Start(28)).map_err(failed)?;
    file.write_all(&u32::try_from(pages).unwrap_or(u32::MAX).to_be_bytes())
        .map_err(failed)?;
    Ok(copy)
}

/// `None` when SQLite finds the file sound, else its first complaints.
fn quick_check(connection: &Connection) -> rusqlite::Result<Option<String>> {
    let mut statement = connection.prepare("PRAGMA quick_check(5)")?;
    let lines: Vec<String> = statement
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok((lines != ["ok"]).then(|| lines.join("; ")))
}

fn is_damage(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// Every readable record in offset order, the unreadable ranges between them, and whether the
/// tail was unreadable.
fn readable_records(connection: &Connection) -> (Vec<StoredRow>, Vec<(u64, u64)>, bool) {
    let mut rows = Vec::new();
    let mut unreadable = Vec::new();
    let mut cursor: i64 = 0;
    loop {
        let (page, failed) = read_after(connection, cursor);
        let read = page.len();
        if let Some(last) = page.last() {
            cursor = last.offset;
        }
        rows.extend(page);
        if !failed {
            if (read as i64) < PAGE {
                return (rows, unreadable, false);
            }
            continue;
        }
        // Something after `cursor` cannot be read: find the next offset that can.
        match next_readable_offset(connection, cursor) {
            Some(next) => {
                unreadable.push((schema::from_sql(cursor + 1), schema::from_sql(next - 1)));
                cursor = next - 1;
            }
            None => return (rows, unreadable, true),
        }
    }
}

/// Up to [`PAGE`] records after `cursor`, and whether reading stopped at damage.
fn read_after(connection: &Connection, cursor: i64) -> (Vec<StoredRow>, bool) {
    let mut rows = Vec::new();
    let Ok(mut statement) = connection.prepare(
        "SELECT offset, id, name, partition_key, received_at, payload, checksum
         FROM log WHERE offset > ?1 ORDER BY offset LIMIT ?2",
    ) else {
        return (rows, true);
    };
    let Ok(mut cursor_rows) = statement.query(params![cursor, PAGE]) else {
        return (rows, true);
    };
    loop {
        match cursor_rows.next() {
            Ok(Some(row)) => {
                let read = (|| {
                    Ok::<_, rusqlite::Error>(StoredRow {
                        offset: row.get(0)?,
                        id: row.get(1)?,
                        name: row.get(2)?,
                        partition_key: row.get(3)?,
                        received_at: row.get(4)?,
                        payload: row.get(5)?,
                        checksum: row.get(6)?,
                    })
                })();
                match read {
                    Ok(stored) => rows.push(stored),
                    Err(_) => return (rows, true),
                }
            }
            Ok(None) => return (rows, false),
            Err(_) => return (rows, true),
        }
    }
}

/// The first offset after `cursor + 1` from which a read succeeds, probing ahead in doubling
/// steps; `None` when no probe finds a record.
fn next_readable_offset(connection: &Connection, cursor: i64) -> Option<i64> {
    let mut step: i64 = 1;
    loop {
        let probe = cursor.checked_add(step)?;
        let found: rusqlite::Result<Option<i64>> = connection.query_row(
            "SELECT MIN(offset) FROM log WHERE offset > ?1",
            [probe],
            |row| row.get(0),
        );
        match found {
            Ok(Some(next)) => {
                // The record itself must be readable too.
                let (page, _) = read_after(connection, next - 1);
                if page.first().is_some_and(|row| row.offset == next) {
                    return Some(next);
                }
                step = step.checked_mul(2)?.max(next - cursor);
            }
            Ok(None) => return None,
            Err(_) => step = step.checked_mul(2)?,
        }
    }
}

/// The committed offsets, when the table can be read whole.
fn read_offsets(connection: &Connection) -> Option<Vec<(String, i64)>> {
    let mut statement = connection
        .prepare("SELECT destination, offset FROM offsets")
        .ok()?;
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .ok()?
        .collect::<rusqlite::Result<_>>()
        .ok()
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_with_companions(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(sibling(path, suffix));
    }
}
