//! The client's driver thread: it performs the core's storage work, starts uploads on an upload
//! thread, sleeps until the core's next deadline, and writes the client's named values.
//!
//! # Invariants
//! - Only this thread touches the store; it never holds the state lock during I/O, so the app's
//!   threads never wait on the disk.
//! - `stored_through` is raised only when `poll` returned something other than storage work,
//!   i.e. when every record up to `last_seq` was written (or left the queue, counted).
//! - The app's listener is called here, outside the lock, after the work that caused it.
//! - On shutdown, the storage work already emitted is performed before the thread ends; uploads
//!   still in flight report to a queue nobody reads, and their records stay in the store.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tributary_core::queue::{QueueEvent, Upload};
use tributary_core::store::{SqliteStore, Store};
use tributary_core::{DeliveryQueue, Identity, UploadOutcome, Work};

use crate::clock::Clock;
use crate::config::Settings;
use crate::listener::{DeliveryEvent, DeliveryListener, MAX_PENDING};
use crate::upload::{UploadError, UploadRequest, Uploader};

/// The longest the driver sleeps without looking at the queue (a safety net; every change
/// wakes it at once).
const LONGEST_SLEEP: Duration = Duration::from_secs(60);

/// What the client's calls, the driver and the upload thread share, behind one lock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) queue: DeliveryQueue,
    pub(crate) identity: Identity,
    pub(crate) opted_out: bool,
    pub(crate) context: serde_json::Map<String, serde_json::Value>,
    pub(crate) rng: fastrand::Rng,
    /// Named values for the driver to write (identity, opt-out, app version), in order.
    pub(crate) meta_writes: Vec<(String, String)>,
    /// The app version and build seen at the last launch.
    pub(crate) app_version: Option<String>,
    pub(crate) app_build: Option<String>,
    /// Something changed: the driver polls again before it sleeps.
    pub(crate) dirty: bool,
    pub(crate) closed: bool,
    pub(crate) driver_done: bool,
    /// Every event with a sequence number up to this one is in the store or left the queue.
    pub(crate) stored_through: u64,
    pub(crate) store_errors: u64,
    pub(crate) ignored_opted_out: u64,
    /// Upload failures (retryable or paused) since the client opened, and the last one's cause.
    pub(crate) failures: u64,
    pub(crate) last_failure: Option<String>,
    /// The app's listener, and what it has not been told yet (only kept while it is set).
    pub(crate) listener: Option<Listener>,
    pub(crate) notifications: VecDeque<DeliveryEvent>,
}

/// The app's listener (a foreign object: no `Debug`).
#[derive(Clone)]
pub(crate) struct Listener(pub(crate) Arc<dyn DeliveryListener>);

impl std::fmt::Debug for Listener {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Listener")
    }
}

impl State {
    /// Reads the core's notifications: failures for `flush_blocking`.
    pub(crate) fn publish(&mut self) {
        for event in self.queue.take_events() {
            match &event {
                QueueEvent::RetryScheduled { cause, .. } => {
                    self.failures += 1;
                    self.last_failure = Some(cause.clone());
                }
                QueueEvent::Paused { status, .. } => {
                    self.failures += 1;
                    self.last_failure = Some(format!("HTTP {status}: the write key was refused"));
                }
                QueueEvent::Delivered { .. }
                | QueueEvent::Dropped { .. }
                | QueueEvent::Evicted { .. } => {}
            }
            if self.listener.is_some() {
                if self.notifications.len() == MAX_PENDING {
                    self.notifications.pop_front();
                }
                self.notifications.push_back(DeliveryEvent::from(event));
            }
        }
    }

    /// Marks a change and wakes the driver and every waiting caller.
    pub(crate) fn changed(&mut self, shared: &Shared) {
        self.dirty = true;
        shared.changed.notify_all();
    }
}

/// The state, the condition variable every waiter waits on, and the clock.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) changed: Condvar,
    pub(crate) clock: Clock,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock but broken invariants of the core; the queue is
        // still consistent enough to keep the events, so a poisoned lock is used as is.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn wait<'a>(
        &self,
        guard: MutexGuard<'a, State>,
        timeout: Duration,
    ) -> MutexGuard<'a, State> {
        self.changed
            .wait_timeout(guard, timeout)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }
}

/// The driver thread's own things.
pub(crate) struct Driver {
    pub(crate) shared: Arc<Shared>,
    pub(crate) store: SqliteStore,
    pub(crate) uploader: Arc<dyn Uploader>,
    pub(crate) settings: Settings,
}

impl Driver {
    pub(crate) fn run(mut self) {
        let mut state = self.shared.lock();
        loop {
            if !state.meta_writes.is_empty() {
                // They leave the list only once written, so `wait_until_stored` waits for them;
                // calls meanwhile only append.
                let writes = state.meta_writes.clone();
                drop(state);
                let failed = writes
                    .iter()
                    .filter(|(key, value)| self.store.set_meta(key, value).is_err())
                    .count();
                state = self.shared.lock();
                state.meta_writes.drain(..writes.len());
                state.store_errors += failed as u64;
                continue;
            }
            state.dirty = false;
            let now = self.shared.clock.now();
            let work = state.queue.poll(now);
            match work {
                Work::Persist(_) | Work::Delete(_) | Work::SaveRetryState(_) => {
                    drop(state);
                    let failed = self.store.perform(&work).is_err();
                    state = self.shared.lock();
                    if failed {
                        state.store_errors += 1;
                    }
                    continue;
                }
                Work::Upload(upload) if !state.closed => {
                    state.stored_through = state.queue.last_seq();
                    self.start_upload(upload, &mut state);
                    continue;
                }
                Work::Upload(_) => {}
                Work::WaitUntil(_) | Work::Idle => {
                    state.stored_through = state.queue.last_seq();
                }
            }
            state.publish();
            self.shared.changed.notify_all();
            if !state.notifications.is_empty()
                && let Some(listener) = state.listener.clone()
            {
                let events = std::mem::take(&mut state.notifications);
                drop(state);
                for event in events {
                    // A listener that throws or panics must not stop deliveries.
                    let _ = catch_unwind(AssertUnwindSafe(|| listener.0.on_event(event)));
                }
                state = self.shared.lock();
                continue;
            }
            if state.closed {
                state.driver_done = true;
                self.shared.changed.notify_all();
                return;
            }
            if !state.dirty {
                let sleep = match work {
                    Work::WaitUntil(at) => self.shared.clock.real_wait_until(at),
                    _ => LONGEST_SLEEP,
                };
                if !sleep.is_zero() {
                    state = self.shared.wait(state, sleep.min(LONGEST_SLEEP));
                }
            }
        }
    }

    /// Sends one batch on its own thread; the outcome goes straight back into the queue.
    fn start_upload(&self, upload: Upload, state: &mut State) {
        let mut headers = vec![
            ("Authorization", self.settings.authorization.as_str()),
            ("Content-Type", "application/json"),
            (
                "User-Agent",
                concat!("tributary-mobile/", env!("CARGO_PKG_VERSION")),
            ),
        ];
        let body = if self.settings.gzip {
            headers.push(("Content-Encoding", "gzip"));
            gzip(&upload.body)
        } else {
            upload.body
        };
        let request = UploadRequest {
            url: self.settings.batch_url.clone(),
            headers: headers
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            body,
            timeout_millis: u64::try_from(self.settings.upload_timeout.as_millis())
                .unwrap_or(u64::MAX),
        };
        let shared = self.shared.clone();
        let uploader = self.uploader.clone();
        let id = upload.id;
        let report = move || {
            let answer = catch_unwind(AssertUnwindSafe(|| uploader.upload(request)));
            let now = shared.clock.now();
            let outcome = match answer {
                Ok(Ok(response)) => UploadOutcome::Response {
                    status: response.status,
                    retry_after: response
                        .retry_after
                        .as_deref()
                        .and_then(|value| tributary_core::policy::parse_retry_after(value, now)),
                    body: response.body,
                },
                Ok(Err(UploadError::TimedOut)) => UploadOutcome::TimedOut,
                Ok(Err(UploadError::ConnectionFailed { reason })) => {
                    UploadOutcome::ConnectionFailed(reason)
                }
                Err(_) => UploadOutcome::ConnectionFailed("the uploader panicked".into()),
            };
            let mut state = shared.lock();
            state.queue.upload_completed(id, outcome, now);
            state.publish();
            state.changed(&shared);
        };
        let spawned = std::thread::Builder::new()
            .name("tributary-upload".into())
            .spawn(report);
        if spawned.is_err() {
            // No thread: the upload counts as a connection failure and is retried with backoff.
            let now = self.shared.clock.now();
            state.queue.upload_completed(
                id,
                UploadOutcome::ConnectionFailed("cannot start the upload thread".into()),
                now,
            );
        }
    }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
}
