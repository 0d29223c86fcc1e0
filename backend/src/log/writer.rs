//! The single writer thread, with group commit: every append request waiting when a transaction
//! starts joins it, so concurrent requests share one fsync.
//!
//! Destinations' offset commits ([`super::LogReader::commit_offset`] on a reader of a running
//! log) come through this thread too, so only this thread writes to the log. SQLite lets one
//! connection write at a time, and another waits in its busy handler, sleeping 1, 2, 5, 10, …
//! 100 ms between tries: under load the writer is almost never idle, so a delivery worker
//! committing through its own connection slept for up to seconds, and the writer itself slept
//! whenever such a commit held the lock.
//!
//! # Invariants
//! - The writer assigns offsets itself, one more than the greatest offset ever seen in the log or
//!   in any committed destination offset, so offsets never repeat even after retention emptied
//!   the log.
//! - A failed transaction is rolled back whole and every request in it gets the error; the next
//!   transaction starts from the last committed offset.
//! - Offset commits waiting when a group starts are written in a transaction of their own, after
//!   the group's appends are answered, through a second connection with `synchronous = NORMAL`
//!   (used by this thread only, so the two never wait for each other): a full log (which fails
//!   appends) never blocks them, they never delay an append's answer, and they cost no fsync.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, params};
use tokio::sync::{oneshot, watch};

use super::schema::{checksum, from_sql, to_sql};
use super::{AppendOutcome, IncomingEvent, LogError};

/// The most events one transaction takes (more requests wait for the next one).
const MAX_EVENTS_PER_COMMIT: usize = 20_000;

struct AppendRequest {
    events: Vec<IncomingEvent>,
    reply: oneshot::Sender<Result<AppendOutcome, LogError>>,
}

struct OffsetRequest {
    destination: String,
    offset: u64,
    reply: mpsc::SyncSender<Result<(), LogError>>,
}

enum Request {
    Append(AppendRequest),
    CommitOffset(OffsetRequest),
}

/// A handle to the writer thread.
#[derive(Clone)]
pub struct LogWriter {
    requests: std::sync::Arc<std::sync::Mutex<Option<mpsc::Sender<Request>>>>,
    thread: std::sync::Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl LogWriter {
    /// Starts the thread; it appends through `connection` (`synchronous = FULL`) and commits
    /// offsets through `offsets` (`synchronous = NORMAL`, as readers did: an offset lost to a
    /// power failure only means a redelivery, and no fsync is spent on it).
    pub(crate) fn start(
        connection: Connection,
        offsets: Connection,
        dedup_window: Duration,
        appended: watch::Sender<u64>,
    ) -> Result<Self, LogError> {
        let last = initial_offset(&connection)?;
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tributary-log-writer".into())
            .spawn(move || {
                run(connection, offsets, receiver, last, dedup_window, &appended);
            })
            .map_err(|error| LogError::Storage(format!("cannot start the log writer: {error}")))?;
        Ok(Self {
            requests: std::sync::Arc::new(std::sync::Mutex::new(Some(sender))),
            thread: std::sync::Arc::new(std::sync::Mutex::new(Some(thread))),
        })
    }

    pub(crate) async fn append(
        &self,
        events: Vec<IncomingEvent>,
    ) -> Result<AppendOutcome, LogError> {
        if events.is_empty() {
            return Ok(AppendOutcome::default());
        }
        let (reply, answer) = oneshot::channel();
        {
            let guard = self
                .requests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let sender = guard.as_ref().ok_or(LogError::Closed)?;
            sender
                .send(Request::Append(AppendRequest { events, reply }))
                .map_err(|_| LogError::Closed)?;
        }
        answer.await.map_err(|_| LogError::Closed)?
    }

    /// Records that `destination` is done with every offset up to `offset` (never moves back),
    /// in the writer's next transaction; blocks until it is committed.
    ///
    /// # Errors
    /// [`LogError::Closed`] when the writer has stopped; SQLite's error otherwise.
    pub(crate) fn commit_offset_blocking(
        &self,
        destination: &str,
        offset: u64,
    ) -> Result<(), LogError> {
        let (reply, answer) = mpsc::sync_channel(1);
        {
            let guard = self
                .requests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let sender = guard.as_ref().ok_or(LogError::Closed)?;
            sender
                .send(Request::CommitOffset(OffsetRequest {
                    destination: destination.to_owned(),
                    offset,
                    reply,
                }))
                .map_err(|_| LogError::Closed)?;
        }
        answer.recv().map_err(|_| LogError::Closed)?
    }

    pub(crate) async fn close(&self) {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn initial_offset(connection: &Connection) -> Result<u64, LogError> {
    let greatest: i64 = connection
        .query_row(
            "SELECT MAX(COALESCE((SELECT MAX(offset) FROM log), 0), COALESCE((SELECT MAX(offset) FROM offsets), 0))",
            [],
            |row| row.get(0),
        )
        .map_err(|error| LogError::from_sqlite(&error))?;
    Ok(from_sql(greatest))
}

fn run(
    mut connection: Connection,
    mut offsets_connection: Connection,
    requests: mpsc::Receiver<Request>,
    mut last_offset: u64,
    dedup_window: Duration,
    appended: &watch::Sender<u64>,
) {
    while let Ok(first) = requests.recv() {
        let mut group = Vec::new();
        let mut offsets = Vec::new();
        let mut events = 0;
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Append(request) => {
                    events += request.events.len();
                    group.push(request);
                }
                Request::CommitOffset(request) => offsets.push(request),
            }
            if events < MAX_EVENTS_PER_COMMIT {
                next = requests.try_recv().ok();
            }
        }
        if !group.is_empty() {
            append_group(
                &mut connection,
                group,
                &mut last_offset,
                dedup_window,
                appended,
            );
        }
        if !offsets.is_empty() {
            let result = write_offsets(&mut offsets_connection, &offsets);
            if let Err(error) = &result {
                tracing::error!(message = "log offset commit failed", %error);
            }
            for request in offsets {
                let _ = request.reply.send(result.clone());
            }
        }
    }
}

fn append_group(
    connection: &mut Connection,
    group: Vec<AppendRequest>,
    last_offset: &mut u64,
    dedup_window: Duration,
    appended: &watch::Sender<u64>,
) {
    let now = unix_millis();
    let window_start =
        now.saturating_sub(u64::try_from(dedup_window.as_millis()).unwrap_or(u64::MAX));
    match write_group(connection, &group, *last_offset, now, window_start) {
        Ok((outcomes, new_last)) => {
            *last_offset = new_last;
            appended.send_replace(new_last);
            for (request, outcome) in group.into_iter().zip(outcomes) {
                let _ = request.reply.send(Ok(outcome));
            }
        }
        Err(error) => {
            tracing::error!(message = "log append failed", %error);
            for request in group {
                let _ = request.reply.send(Err(error.clone()));
            }
        }
    }
}

fn write_group(
    connection: &mut Connection,
    group: &[AppendRequest],
    mut offset: u64,
    now: u64,
    window_start: u64,
) -> Result<(Vec<AppendOutcome>, u64), LogError> {
    let sqlite = |error: rusqlite::Error| LogError::from_sqlite(&error);
    let transaction = connection.transaction().map_err(sqlite)?;
    let mut outcomes = Vec::with_capacity(group.len());
    {
        let mut remember = transaction
            .prepare_cached(
                "INSERT INTO seen_ids (id, received_at) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET received_at = excluded.received_at
                 WHERE seen_ids.received_at < ?3",
            )
            .map_err(sqlite)?;
        let mut insert = transaction
            .prepare_cached(
                "INSERT INTO log (offset, id, name, partition_key, received_at, payload, checksum)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(sqlite)?;
        for request in group {
            let mut outcome = AppendOutcome::default();
            for event in &request.events {
                // A row is written or refreshed only when the id is new or its last sighting
                // is older than the window; otherwise it is a duplicate.
                let fresh = remember
                    .execute(params![event.id, to_sql(now), to_sql(window_start)])
                    .map_err(sqlite)?;
                if fresh == 0 {
                    outcome.duplicates += 1;
                    continue;
                }
                offset += 1;
                insert
                    .execute(params![
                        to_sql(offset),
                        event.id,
                        event.name,
                        event.partition_key,
                        to_sql(event.received_at.as_unix_millis()),
                        event.json,
                        i64::from(checksum(offset, &event.id, &event.json)),
                    ])
                    .map_err(sqlite)?;
                outcome.appended += 1;
            }
            outcomes.push(outcome);
        }
    }
    transaction.commit().map_err(sqlite)?;
    Ok((outcomes, offset))
}

/// One transaction for every offset commit of a group (the greatest per destination wins, as
/// the upsert keeps the maximum anyway).
fn write_offsets(connection: &mut Connection, offsets: &[OffsetRequest]) -> Result<(), LogError> {
    let sqlite = |error: rusqlite::Error| LogError::from_sqlite(&error);
    let transaction = connection.transaction().map_err(sqlite)?;
    {
        let mut upsert = transaction
            .prepare_cached(super::reader::COMMIT_OFFSET_SQL)
            .map_err(sqlite)?;
        for request in offsets {
            upsert
                .execute(params![request.destination, to_sql(request.offset)])
                .map_err(sqlite)?;
        }
    }
    transaction.commit().map_err(sqlite)
}

fn unix_millis() -> u64 {
    let millis = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    u64::try_from(millis).unwrap_or(u64::MAX)
}
