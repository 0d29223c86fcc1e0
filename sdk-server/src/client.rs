//! The public client and its builder.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc, oneshot};
use tributary_core::queue::QueueEvent;
use tributary_core::{DeliveryQueue, Policy};

use crate::driver::{Command, Driver};
use crate::http::HttpTransport;
use crate::report::{ShutdownReport, Stats};
use crate::store::QueueStore;
use crate::{Error, Event};

/// The default ingest: a local `tributary serve`.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080";
/// How long one upload may take before it counts as timed out (and is retried).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// What `shutdown` may take beyond its timeout: stopping uploads and a last store write.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

pub(crate) type EventCallback = Arc<dyn Fn(&QueueEvent) + Send + Sync>;

/// Configures and starts a [`Client`].
pub struct ClientBuilder {
    write_key: String,
    endpoint: String,
    policy: Policy,
    request_timeout: Duration,
    gzip: bool,
    store: StoreChoice,
    on_event: Option<EventCallback>,
    http_client: Option<reqwest::Client>,
}

enum StoreChoice {
    Memory,
    #[cfg(feature = "sqlite")]
    Sqlite(std::path::PathBuf, tributary_core::store::Durability),
}

impl ClientBuilder {
    /// The ingest's base URL (default `http://127.0.0.1:8080`); batches go to `/v1/batch`.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    /// The queue's rules (default [`Policy::server`]: 100 events or 1 s per flush, 4 uploads in
    /// flight, 10,000 events or 10 MiB queued).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// How long one upload may take (default 10 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Compress request bodies with gzip (default off: on a fast network it costs more CPU than
    /// it saves).
    pub fn gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }

    /// Keep the queue in a SQLite file, so that undelivered events survive a restart or crash
    /// and are sent by the next client that opens the file (default: memory only).
    #[cfg(feature = "sqlite")]
    pub fn sqlite_store(
        mut self,
        path: impl Into<std::path::PathBuf>,
        durability: tributary_core::store::Durability,
    ) -> Self {
        self.store = StoreChoice::Sqlite(path.into(), durability);
        self
    }

    /// Called on the client's background task for every delivery, drop, eviction, retry and
    /// pause. Keep it quick.
    pub fn on_event(mut self, callback: impl Fn(&QueueEvent) + Send + Sync + 'static) -> Self {
        self.on_event = Some(Arc::new(callback));
        self
    }

    /// Use this HTTP client (for proxies, custom TLS roots, …).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Opens the store, restores what it holds, and starts the background task.
    ///
    /// # Errors
    /// [`Error::NoRuntime`] outside a tokio runtime; [`Error::Config`] for an unusable endpoint
    /// or write key; [`Error::Store`] when the SQLite file cannot be opened.
    pub fn build(self) -> Result<Client, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        if self.write_key.is_empty() {
            return Err(Error::Config("the write key is empty".into()));
        }
        let transport = HttpTransport::new(
            &self.endpoint,
            &self.write_key,
            self.request_timeout,
            self.gzip,
            self.http_client,
        )?;
        let store = match self.store {
            StoreChoice::Memory => QueueStore::Memory,
            #[cfg(feature = "sqlite")]
            StoreChoice::Sqlite(path, durability) => QueueStore::Sqlite(Arc::new(Mutex::new(
                tributary_core::store::SqliteStore::open(path, durability)?,
            ))),
        };
        let loaded = store.load()?;
        let mut queue =
            DeliveryQueue::new(self.policy.clone(), store.is_durable(), fastrand::u64(..));
        queue.restore(loaded.records, loaded.corrupt, loaded.retry_state);

        let shared = Arc::new(Shared {
            stats: Mutex::new(Stats::default()),
            queued: AtomicUsize::new(queue.len()),
            capacity: self.policy.capacity_events,
            recovering: AtomicBool::new(queue.retry_state().is_recovering()),
            room: Notify::new(),
        });
        let (commands, receiver) = mpsc::unbounded_channel();
        let driver = Driver::new(
            queue,
            store,
            transport,
            receiver,
            shared.clone(),
            self.on_event,
        );
        runtime.spawn(driver.run());
        Ok(Client {
            inner: Arc::new(Inner { commands, shared }),
        })
    }
}

/// State the application's threads and the background task share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) stats: Mutex<Stats>,
    /// Events handed to the background task and not yet out of the queue (approximate).
    pub(crate) queued: AtomicUsize,
    pub(crate) capacity: usize,
    /// The ingest is failing: waiting for room would wait for the ingest, so don't.
    pub(crate) recovering: AtomicBool,
    /// Signalled when events leave the queue.
    pub(crate) room: Notify,
}

impl Shared {
    fn has_room(&self) -> bool {
        self.queued.load(Ordering::Relaxed) < self.capacity
            || self.recovering.load(Ordering::Relaxed)
    }
}

/// Sends events to a Tributary ingest in the background. Cheap to clone; every clone feeds the
/// same queue.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Client")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Client {
    /// A builder for a client that authenticates with `write_key`.
    pub fn builder(write_key: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            write_key: write_key.into(),
            endpoint: DEFAULT_ENDPOINT.into(),
            policy: Policy::server(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            gzip: false,
            store: StoreChoice::Memory,
            on_event: None,
            http_client: None,
        }
    }

    /// Queues an event and returns at once; never blocks. When the queue is full the oldest
    /// events are evicted (counted and reported), as on every platform.
    ///
    /// # Errors
    /// [`Error::InvalidEvent`] for a bad name, id, user id or non-object data (an event over
    /// 32 KiB is found when serialized in the background: dropped, counted as
    /// [`crate::DropReason::Invalid`] and reported); [`Error::Closed`] after `shutdown`.
    pub fn track(&self, event: Event) -> Result<(), Error> {
        event.check()?;
        self.send(event)
    }

    /// Queues an event like [`Client::track`], but first waits while the queue is full and the
    /// ingest is healthy, so a burst faster than delivery slows the producer instead of evicting
    /// events. While the ingest is failing it does not wait (the queue's eviction bounds memory).
    ///
    /// # Errors
    /// As [`Client::track`].
    pub async fn track_with_backpressure(&self, event: Event) -> Result<(), Error> {
        event.check()?;
        let shared = &self.inner.shared;
        loop {
            let room = shared.room.notified();
            if shared.has_room() {
                break;
            }
            room.await;
        }
        self.send(event)
    }

    /// Sends an `$identify` event: `user_id` has these traits (a JSON object).
    ///
    /// # Errors
    /// As [`Client::track`].
    pub fn identify(&self, user_id: impl Into<String>, traits: Value) -> Result<(), Error> {
        self.track(Event::identify(user_id, traits))
    }

    /// Sends everything queued now and waits for the answer.
    ///
    /// # Errors
    /// [`Error::NotDelivered`] when an upload of these events failed (retryable failure or a
    /// refused key): they stay queued and are retried with backoff. [`Error::Closed`] after
    /// `shutdown`.
    pub async fn flush(&self) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Flush(reply))
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// Delivers what it can within `timeout`, then stops: undelivered events stay in the
    /// SQLite store for the next start, or are counted as `lost` with a memory queue. Returns
    /// within `timeout` plus a fraction of a second. Later calls on any clone fail with
    /// [`Error::Closed`].
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let deadline = tokio::time::Instant::now() + timeout;
        let (reply, answer) = oneshot::channel();
        let fallback = || ShutdownReport {
            stats: self.stats(),
            ..ShutdownReport::default()
        };
        if self
            .inner
            .commands
            .send(Command::Shutdown { deadline, reply })
            .is_err()
        {
            return fallback();
        }
        match tokio::time::timeout(timeout + SHUTDOWN_GRACE, answer).await {
            Ok(Ok(report)) => report,
            _ => fallback(),
        }
    }

    /// The client's counters now.
    pub fn stats(&self) -> Stats {
        *self
            .inner
            .shared
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn send(&self, mut event: Event) -> Result<(), Error> {
        event.stamp(OffsetDateTime::now_utc());
        self.inner.shared.queued.fetch_add(1, Ordering::Relaxed);
        self.inner
            .commands
            .send(Command::Track(event))
            .map_err(|_| {
                self.inner.shared.queued.fetch_sub(1, Ordering::Relaxed);
                Error::Closed
            })
    }
}
