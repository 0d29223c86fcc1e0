//! One destination's worker: follows the log, batches the events routed to it, keeps per-key
//! order, runs delivery jobs, and commits its offset.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tributary_core::Timestamp;

use super::job::{self, JobContext, JobOutcome};
use crate::clock;
use crate::connectors::OutgoingEvent;
use crate::log::{EventLog, LogError, LogReader, LogRecord};
use crate::ops::metrics::Metrics;
use crate::routing::RoutingRules;

/// Records read ahead of delivery, at most.
const READ_AHEAD: usize = 10_000;
/// Records read from the log per query.
const READ_CHUNK: usize = 2_000;
/// How often the committed offset is written while busy.
const COMMIT_INTERVAL: Duration = Duration::from_millis(200);
/// How long a part-full batch may wait for more events while another batch is in flight: a
/// trickle of events then goes out in fewer, fuller batches (a little latency for much less
/// per-batch work). With nothing in flight a batch goes at once.
const BATCH_LINGER: Duration = Duration::from_millis(5);
/// How long in-flight batches may finish after shutdown is asked.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Delivers one destination's events.
pub struct DestinationWorker {
    /// Shared by this destination's jobs.
    pub context: Arc<JobContext>,
    /// Events per batch.
    pub batch_size: usize,
    /// Batches in flight or waiting for a retry, at most.
    pub max_jobs: usize,
    /// Which events this destination gets.
    pub rules: Arc<RoutingRules>,
    /// The log to follow.
    pub log: EventLog,
}

/// Records taken from the log and not yet finished (delivered or dead-lettered).
struct Progress {
    /// Next offset to read is `cursor + 1`.
    cursor: u64,
    committed: u64,
    /// Offset → arrival time, for every routed record not yet finished.
    unfinished: BTreeMap<u64, Timestamp>,
    /// Routed records not yet in a job, in offset order.
    waiting: VecDeque<LogRecord>,
    /// Keys held by a job (in flight or waiting for a retry), with how many jobs hold each.
    busy_keys: HashMap<String, usize>,
}

struct JobHandle {
    offsets: Vec<u64>,
    keys: Vec<String>,
}

impl DestinationWorker {
    /// Runs until `shutdown` is cancelled; then lets in-flight batches finish for a few seconds
    /// and commits the final offset.
    ///
    /// # Errors
    /// When the log cannot be read or its offset written.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), LogError> {
        let name = self.context.destination.clone();
        let label = Metrics::destination(&name);
        self.context.metrics.declare_destination(&name);
        let reader = Arc::new(Mutex::new(self.log.reader()?));
        let committed = blocking(&reader, {
            let name = name.clone();
            move |reader| reader.committed_offset(&name)
        })
        .await?;
        let shared_committed = Arc::new(std::sync::atomic::AtomicU64::new(committed));
        self.context
            .metrics
            .track_lag(&name, shared_committed.clone(), self.log.appended());
        let mut progress = Progress {
            cursor: committed,
            committed,
            unfinished: BTreeMap::new(),
            waiting: VecDeque::new(),
            busy_keys: HashMap::new(),
        };
        // The names this destination gets, for the log to filter on (`None`: every name).
        let names: Option<Arc<[String]>> = self.rules.event_names_for(&name).map(Arc::from);
        let mut appended = self.log.appended();
        let mut jobs: JoinSet<JobOutcome> = JoinSet::new();
        let mut handles: HashMap<tokio::task::Id, JobHandle> = HashMap::new();
        let mut last_commit = Instant::now();

        loop {
            let newest = *appended.borrow_and_update();
            if progress.waiting.len() < READ_AHEAD && newest > progress.cursor {
                self.read_more(&reader, &mut progress, names.as_ref(), newest)
                    .await?;
            }
            let mut linger_until = None;
            while jobs.len() < self.max_jobs {
                if let Some(wait) = linger(&progress, self.batch_size, !jobs.is_empty()) {
                    linger_until = Some(tokio::time::Instant::now() + wait);
                    break;
                }
                let batch = take_batch(&mut progress, self.batch_size);
                if batch.is_empty() {
                    break;
                }
                let offsets = batch.iter().map(|record| record.offset).collect();
                let keys: Vec<String> = batch
                    .iter()
                    .map(|record| record.partition_key.clone())
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect();
                for key in &keys {
                    *progress.busy_keys.entry(key.clone()).or_default() += 1;
                }
                let events: Vec<OutgoingEvent> = batch.iter().map(OutgoingEvent::from).collect();
                let handle = jobs.spawn(job::run(self.context.clone(), events));
                handles.insert(handle.id(), JobHandle { offsets, keys });
            }
            let safe = progress
                .unfinished
                .keys()
                .next()
                .map_or(progress.cursor, |first| first - 1);
            let idle = jobs.is_empty() && progress.waiting.is_empty();
            if safe > progress.committed && (idle || last_commit.elapsed() >= COMMIT_INTERVAL) {
                commit(&reader, &name, safe).await?;
                progress.committed = safe;
                shared_committed.store(safe, std::sync::atomic::Ordering::Release);
                last_commit = Instant::now();
            }
            self.publish_lag_age(&label, &progress);

            let room_to_read = progress.waiting.len() < READ_AHEAD;
            if room_to_read && progress.cursor < newest {
                // The last read stopped at its chunk size: read on at once.
                continue;
            }
            let commit_pending = safe > progress.committed;
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(done) = jobs.join_next_with_id(), if !jobs.is_empty() => {
                    let id = match &done { Ok((id, _)) => *id, Err(error) => error.id() };
                    if let Some(handle) = handles.remove(&id) {
                        finish(&mut progress, &handle, done.is_ok());
                    }
                }
                // Wakes at once for any append since `borrow_and_update` above.
                changed = appended.changed(), if room_to_read => {
                    if changed.is_err() { break; }
                }
                () = tokio::time::sleep(COMMIT_INTERVAL), if commit_pending => {}
                () = sleep_until(linger_until), if linger_until.is_some() => {}
            }
        }

        // Let batches in flight finish (those waiting for a retry are abandoned: they are
        // redelivered after the restart), then commit what is done.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while !jobs.is_empty() {
            match tokio::time::timeout_at(deadline, jobs.join_next_with_id()).await {
                Ok(Some(done)) => {
                    let id = match &done {
                        Ok((id, _)) => *id,
                        Err(error) => error.id(),
                    };
                    if let Some(handle) = handles.remove(&id) {
                        finish(&mut progress, &handle, done.is_ok());
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    jobs.abort_all();
                    break;
                }
            }
        }
        let safe = progress
            .unfinished
            .keys()
            .next()
            .map_or(progress.cursor, |first| first - 1);
        if safe > progress.committed {
            commit(&reader, &name, safe).await?;
            shared_committed.store(safe, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    }

    async fn read_more(
        &self,
        reader: &Arc<Mutex<LogReader>>,
        progress: &mut Progress,
        names: Option<&Arc<[String]>>,
        newest: u64,
    ) -> Result<(), LogError> {
        let after = progress.cursor;
        let names = names.cloned();
        let batch = blocking(reader, move |reader| {
            reader.read_routed(after, newest, names.as_deref(), READ_CHUNK)
        })
        .await?;
        for offset in &batch.corrupt {
            self.context.metrics.corrupt_records.inc();
            tracing::error!(message = "log record failed its checksum; skipped", offset, destination = %self.context.destination);
        }
        progress.cursor = batch.last_examined.unwrap_or(newest).max(progress.cursor);
        for record in batch.records {
            progress
                .unfinished
                .insert(record.offset, record.received_at);
            progress.waiting.push_back(record);
        }
        Ok(())
    }

    /// The age of the oldest record not yet finished (`log_lag_events` is computed when the
    /// metrics are read, from the committed offset this worker shares: `Metrics::track_lag`).
    fn publish_lag_age(&self, label: &crate::ops::metrics::DestinationLabel, progress: &Progress) {
        let metrics = &self.context.metrics;
        let age = progress
            .unfinished
            .values()
            .next()
            .map_or(Duration::ZERO, |oldest| {
                clock::now().saturating_duration_since(*oldest)
            });
        metrics
            .log_lag_seconds
            .get_or_create(label)
            .set(i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
    }
}

/// How long to hold a part-full batch back (see [`BATCH_LINGER`]); `None` to send now.
fn linger(progress: &Progress, batch_size: usize, batch_in_flight: bool) -> Option<Duration> {
    if !batch_in_flight || progress.waiting.len() >= batch_size {
        return None;
    }
    let oldest = progress.waiting.front()?;
    let age = clock::now().saturating_duration_since(oldest.received_at);
    BATCH_LINGER.checked_sub(age).filter(|wait| !wait.is_zero())
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// Takes up to `batch_size` waiting records, oldest first, skipping keys held by a job (those
/// wait, with every later record of the same key, so per-key order holds).
fn take_batch(progress: &mut Progress, batch_size: usize) -> Vec<LogRecord> {
    let mut batch = Vec::new();
    let mut skipped = Vec::new();
    while batch.len() < batch_size {
        let Some(record) = progress.waiting.pop_front() else {
            break;
        };
        if progress.busy_keys.contains_key(&record.partition_key) {
            skipped.push(record);
        } else {
            batch.push(record);
        }
    }
    // The records skipped go back in front, in their order.
    for record in skipped.into_iter().rev() {
        progress.waiting.push_front(record);
    }
    batch
}

/// A job ended: its records are finished (a job that panicked or was aborted leaves them
/// unfinished, so they are redelivered after a restart) and its keys are free.
fn finish(progress: &mut Progress, handle: &JobHandle, completed: bool) {
    if completed {
        for offset in &handle.offsets {
            progress.unfinished.remove(offset);
        }
    }
    for key in &handle.keys {
        if let Some(count) = progress.busy_keys.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                progress.busy_keys.remove(key);
            }
        }
    }
}

async fn commit(
    reader: &Arc<Mutex<LogReader>>,
    destination: &str,
    offset: u64,
) -> Result<(), LogError> {
    let destination = destination.to_owned();
    blocking(reader, move |reader| {
        reader.commit_offset(&destination, offset)
    })
    .await
}

async fn blocking<T: Send + 'static>(
    reader: &Arc<Mutex<LogReader>>,
    action: impl FnOnce(&mut LogReader) -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    let reader = reader.clone();
    tokio::task::spawn_blocking(move || {
        let mut reader = reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        action(&mut reader)
    })
    .await
    .map_err(|error| LogError::Storage(format!("log reader task failed: {error}")))?
}
