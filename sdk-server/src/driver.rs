//! The background task that drives the core: it feeds events in, performs the work the core asks
//! for (store writes, uploads, timers), reports outcomes back, and answers flush and shutdown.
//!
//! # Invariants
//! - Storage work is performed one item at a time, in the order the core emits it.
//! - Every upload task reports back, even when it panics or is aborted (as a connection failure),
//!   so no event stays "in flight" forever.
//! - After shutdown no upload runs and the store is closed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tributary_core::queue::{QueueEvent, UploadId};
use tributary_core::{DeliveryQueue, Timestamp, UploadOutcome, Work};

use crate::client::{EventCallback, Shared};
use crate::http::HttpTransport;
use crate::report::{ShutdownReport, Stats};
use crate::store::QueueStore;
use crate::{Error, Event};

/// How many commands the task takes from its channel at a time.
const COMMAND_BATCH: usize = 1024;
/// How long deliveries go on after every handle was dropped without `shutdown`.
const IMPLICIT_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(10);

/// What a [`crate::Client`] asks of its task.
// Almost every command is a `Track`; boxing it would add an allocation per event for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Command {
    Track(Event),
    Flush(oneshot::Sender<Result<(), Error>>),
    Shutdown {
        deadline: Instant,
        reply: oneshot::Sender<ShutdownReport>,
    },
}

struct PendingFlush {
    last_seq: u64,
    reply: oneshot::Sender<Result<(), Error>>,
}

struct PendingShutdown {
    deadline: Instant,
    reply: Option<oneshot::Sender<ShutdownReport>>,
}

pub(crate) struct Driver {
    queue: DeliveryQueue,
    store: QueueStore,
    transport: Arc<HttpTransport>,
    commands: mpsc::UnboundedReceiver<Command>,
    commands_open: bool,
    uploads: JoinSet<UploadOutcome>,
    upload_ids: HashMap<tokio::task::Id, UploadId>,
    shared: Arc<Shared>,
    on_event: Option<EventCallback>,
    library: Value,
    flushes: Vec<PendingFlush>,
    shutdown: Option<PendingShutdown>,
    wake_at: Option<Instant>,
    store_errors: u64,
    last_failure: Option<String>,
    failed_since_flush: bool,
    left_queue: u64,
}

impl Driver {
    pub(crate) fn new(
        queue: DeliveryQueue,
        store: QueueStore,
        transport: HttpTransport,
        commands: mpsc::UnboundedReceiver<Command>,
        shared: Arc<Shared>,
        on_event: Option<EventCallback>,
    ) -> Self {
        Self {
            queue,
            store,
            transport: Arc::new(transport),
            commands,
            commands_open: true,
            uploads: JoinSet::new(),
            upload_ids: HashMap::new(),
            shared,
            on_event,
            library: json!({"name": "tributary-server", "version": env!("CARGO_PKG_VERSION")}),
            flushes: Vec::new(),
            shutdown: None,
            wake_at: None,
            store_errors: 0,
            last_failure: None,
            failed_since_flush: false,
            left_queue: 0,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut received = Vec::with_capacity(COMMAND_BATCH);
        loop {
            self.perform_work().await;
            self.publish();
            if self.shutdown_is_over() {
                self.finish().await;
                return;
            }
            let wake_at = self.wake_at;
            let deadline = self.shutdown.as_ref().map(|shutdown| shutdown.deadline);
            tokio::select! {
                Some(joined) = self.uploads.join_next_with_id(), if !self.uploads.is_empty() => {
                    let (task, outcome) = match joined {
                        Ok((task, outcome)) => (task, outcome),
                        Err(error) => (error.id(), UploadOutcome::ConnectionFailed(format!("upload task failed: {error}"))),
                    };
                    if let Some(upload) = self.upload_ids.remove(&task) {
                        self.queue.upload_completed(upload, outcome, now());
                    }
                }
                count = self.commands.recv_many(&mut received, COMMAND_BATCH), if self.commands_open => {
                    if count == 0 {
                        self.commands_open = false;
                        self.begin_shutdown(Instant::now() + IMPLICIT_SHUTDOWN, None);
                    }
                    let now = now();
                    for command in received.drain(..) {
                        self.handle(command, now);
                    }
                }
                () = sleep_until(wake_at), if wake_at.is_some() => {}
                () = sleep_until(deadline), if deadline.is_some() => {}
            }
        }
    }

    fn handle(&mut self, command: Command, now: Timestamp) {
        match command {
            Command::Track(event) => {
                let mut envelope = event.into_envelope();
                envelope.source.get_or_insert_with(|| "server".to_owned());
                if !envelope.context.contains_key("library") {
                    envelope
                        .context
                        .insert("library".into(), self.library.clone());
                }
                if let Err(error) = self.queue.enqueue(envelope, now) {
                    tracing::warn!(message = "event dropped", %error);
                }
            }
            Command::Flush(reply) => {
                self.queue.request_flush();
                self.failed_since_flush = false;
                self.flushes.push(PendingFlush {
                    last_seq: self.queue.last_seq(),
                    reply,
                });
            }
            Command::Shutdown { deadline, reply } => self.begin_shutdown(deadline, Some(reply)),
        }
    }

    fn begin_shutdown(
        &mut self,
        deadline: Instant,
        reply: Option<oneshot::Sender<ShutdownReport>>,
    ) {
        self.queue.request_flush();
        self.commands.close();
        match &mut self.shutdown {
            Some(shutdown) => {
                shutdown.deadline = shutdown.deadline.min(deadline);
                if reply.is_some() {
                    shutdown.reply = reply;
                }
            }
            None => self.shutdown = Some(PendingShutdown { deadline, reply }),
        }
    }

    /// Polls the core until it waits, performing storage work and starting uploads.
    async fn perform_work(&mut self) {
        loop {
            match self.queue.poll(now()) {
                Work::Upload(upload) => {
                    let transport = self.transport.clone();
                    let handle = self
                        .uploads
                        .spawn(async move { transport.send(upload.body).await });
                    self.upload_ids.insert(handle.id(), upload.id);
                }
                Work::WaitUntil(at) => {
                    let delay = at.saturating_duration_since(now());
                    self.wake_at = Some(Instant::now() + delay);
                    return;
                }
                Work::Idle => {
                    self.wake_at = None;
                    return;
                }
                storage => self.perform_storage(storage).await,
            }
        }
    }

    async fn perform_storage(&mut self, work: Work) {
        if let Err(error) = self.store.perform(work).await {
            self.store_errors += 1;
            tracing::warn!(message = "event store write failed; events stay in memory", %error);
        }
    }

    /// Passes notifications on, updates the shared stats, wakes producers waiting for room and
    /// answers the flushes that are over.
    fn publish(&mut self) {
        for event in self.queue.take_events() {
            match &event {
                QueueEvent::RetryScheduled { cause, .. } => {
                    self.failed_since_flush = true;
                    self.last_failure = Some(cause.clone());
                }
                QueueEvent::Paused { status, .. } => {
                    self.failed_since_flush = true;
                    self.last_failure = Some(format!("HTTP {status}: the write key was refused"));
                }
                QueueEvent::Dropped {
                    count,
                    reason,
                    detail,
                } => {
                    tracing::warn!(
                        message = "events dropped",
                        count,
                        reason = reason.as_str(),
                        detail
                    );
                }
                QueueEvent::Evicted { count } => {
                    tracing::warn!(message = "queue full: oldest events evicted", count);
                }
                QueueEvent::Delivered { .. } => {}
            }
            if let Some(callback) = &self.on_event {
                callback(&event);
            }
        }

        let counters = *self.queue.counters();
        let left = counters.delivered
            + counters.dropped.after_enqueue()
            + counters.dropped.invalid
            + counters.evicted;
        let newly_left = left.saturating_sub(self.left_queue);
        self.left_queue = left;
        let recovering = self.queue.retry_state().is_recovering();
        self.shared.recovering.store(recovering, Ordering::Relaxed);
        if newly_left > 0 {
            let newly_left = usize::try_from(newly_left).unwrap_or(usize::MAX);
            let _ =
                self.shared
                    .queued
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |queued| {
                        Some(queued.saturating_sub(newly_left))
                    });
        }
        if newly_left > 0 || recovering {
            self.shared.room.notify_waiters();
        }
        *self
            .shared
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = self.stats();

        let oldest = self.queue.oldest_queued_seq();
        let failed = self.failed_since_flush;
        let mut still_pending = Vec::new();
        for flush in self.flushes.drain(..) {
            if oldest.is_none_or(|oldest| oldest > flush.last_seq) {
                let _ = flush.reply.send(Ok(()));
            } else if failed {
                let cause = self.last_failure.clone().unwrap_or_default();
                let _ = flush.reply.send(Err(Error::NotDelivered {
                    queued: self.queue.len(),
                    cause,
                }));
            } else {
                still_pending.push(flush);
            }
        }
        self.flushes = still_pending;
    }

    fn stats(&self) -> Stats {
        Stats {
            counters: *self.queue.counters(),
            queued: self.queue.len(),
            store_errors: self.store_errors,
        }
    }

    /// Whether a shutdown in progress should end now: everything delivered, the deadline
    /// reached, or the next retry only after the deadline.
    fn shutdown_is_over(&self) -> bool {
        let Some(shutdown) = &self.shutdown else {
            return false;
        };
        let now = Instant::now();
        self.queue.is_empty()
            || now >= shutdown.deadline
            || (self.uploads.is_empty() && self.wake_at.is_none_or(|wake| wake > shutdown.deadline))
    }

    async fn finish(mut self) {
        self.uploads.abort_all();
        while self.uploads.join_next().await.is_some() {}
        // Events still in the channel (sent just before shutdown) are queued, so that they are
        // persisted or counted like the rest.
        let now = now();
        while let Ok(command) = self.commands.try_recv() {
            if let Command::Track(_) = command {
                self.handle(command, now);
            }
        }
        // Storage work comes before any upload in `poll`'s order, so stopping at the first
        // non-storage item leaves nothing unwritten.
        while let work @ (Work::Persist(_) | Work::Delete(_) | Work::SaveRetryState(_)) =
            self.queue.poll(now)
        {
            self.perform_storage(work).await;
        }
        self.publish();
        let queued = self.queue.len();
        let durable = self.store.is_durable();
        let report = ShutdownReport {
            stats: self.stats(),
            persisted: if durable { queued } else { 0 },
            lost: if durable { 0 } else { queued },
            drained: queued == 0,
        };
        if report.lost > 0 {
            tracing::warn!(
                message = "shutdown: undelivered events lost (memory queue)",
                lost = report.lost
            );
        }
        for flush in self.flushes.drain(..) {
            let _ = flush.reply.send(Err(Error::Closed));
        }
        if let Some(reply) = self.shutdown.take().and_then(|shutdown| shutdown.reply) {
            let _ = reply.send(report);
        }
    }
}

pub(crate) fn now() -> Timestamp {
    let millis = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    Timestamp::from_unix_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}
