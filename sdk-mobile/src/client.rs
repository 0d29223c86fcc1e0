//! The exported client: one per app, shared by every thread.
//!
//! # Invariants
//! - Calls only validate and queue in memory under the state lock, then wake the driver; they
//!   never wait on the store or the network (the blocking calls say so in their names or docs).
//! - The identity, the opt-out flag and the app version are written through the driver, in the
//!   order the calls made them.
//! - After `shutdown`, every call that would queue an event fails with `Closed`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tributary_core::envelope::validation::check_text;
use tributary_core::envelope::{MAX_USER_ID_CHARS, reserved};
use tributary_core::store::{Durability, SqliteStore, Store};
use tributary_core::{DeliveryQueue, Envelope, Identity};

use crate::clock::Clock;
use crate::config::{ClientConfig, parse_object};
use crate::driver::{Driver, Listener, Shared, State};
use crate::error::{TributaryError, invalid};
use crate::listener::DeliveryListener;
use crate::stats::ClientStats;
use crate::upload::Uploader;

/// Store meta keys.
pub(crate) const IDENTITY_KEY: &str = "identity";
pub(crate) const OPTED_OUT_KEY: &str = "opted_out";
pub(crate) const APP_VERSION_KEY: &str = "app_version";
pub(crate) const APP_BUILD_KEY: &str = "app_build";

/// The store files open in this process: a second client on the same file would send the
/// same events twice and fight over the deletes.
static OPEN_STORES: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Claims a store file for one client until [`release_store`].
fn claim_store(path: &Path) -> Result<PathBuf, TributaryError> {
    let folder = path
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty());
    let folder = folder.map_or_else(|| Path::new(".").canonicalize(), Path::canonicalize);
    let key = match (folder, path.file_name()) {
        (Ok(folder), Some(name)) => folder.join(name),
        _ => path.to_path_buf(),
    };
    let mut open = OPEN_STORES.lock().unwrap_or_else(PoisonError::into_inner);
    if !open.insert(key.clone()) {
        return Err(invalid(
            "store_path: already open by another client in this process (share that one)",
        ));
    }
    Ok(key)
}

fn release_store(key: &Path) {
    OPEN_STORES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(key);
}

/// A Tributary client: queues events durably and sends them in batches through the app's
/// [`Uploader`]. Thread-safe; open one per store file and share it.
#[derive(Debug, uniffi::Object)]
pub struct TributaryClient {
    pub(crate) shared: Arc<Shared>,
    source: String,
    driver: Mutex<Option<JoinHandle<()>>>,
    /// This client's claim on its store file, released at shutdown.
    store_key: PathBuf,
}

#[uniffi::export]
impl TributaryClient {
    /// Opens the store at `config.store_path` (creating it), takes back what it held — queued
    /// events, retry state, identity, opt-out — and starts the client's driver thread.
    ///
    /// Reads the store once on the calling thread: open the client off the main thread.
    ///
    /// # Errors
    /// `InvalidInput` for a bad setting (the field is named) or a store file another client of
    /// this process has open; `Storage` when the store cannot be created or read (a corrupt
    /// file is moved aside and what it still holds is kept).
    #[uniffi::constructor]
    pub fn new(
        config: ClientConfig,
        uploader: Arc<dyn Uploader>,
    ) -> Result<Arc<Self>, TributaryError> {
        Self::open(&config, uploader, Clock::System)
    }

    /// Queues an event called `name` with `properties_json` (a JSON object; empty means `{}`)
    /// as its `data`. Returns the event's id, or `None` when tracking is opted out.
    ///
    /// # Errors
    /// `InvalidInput` when the event breaks an envelope rule (nothing is queued); `Closed`.
    pub fn track(
        &self,
        name: String,
        properties_json: String,
    ) -> Result<Option<String>, TributaryError> {
        let properties = parse_object("properties_json", &properties_json)?;
        self.record(Envelope::new(name, properties))
    }

    /// Queues a `$screen` event: the screen `name` (added to the properties as `name`).
    ///
    /// # Errors
    /// As [`TributaryClient::track`].
    pub fn screen(
        &self,
        name: String,
        properties_json: String,
    ) -> Result<Option<String>, TributaryError> {
        let properties = parse_object("properties_json", &properties_json)?;
        self.record(Envelope::screen(&name, properties))
    }

    /// Sets the user (when `user_id` is given) and merges `traits_json` into the known traits —
    /// a different user id starts from no traits — then queues an `$identify` event. Later
    /// events carry the user id and the traits (`context.traits`). Persisted.
    ///
    /// # Errors
    /// `InvalidInput` for a user id over 256 characters, traits that are not a JSON object or
    /// an event over 32 KiB (the identity is then unchanged); `Closed`.
    pub fn identify(
        &self,
        user_id: Option<String>,
        traits_json: String,
    ) -> Result<Option<String>, TributaryError> {
        let traits = parse_object("traits_json", &traits_json)?;
        if let Some(user_id) = &user_id {
            check_text("user_id", user_id, MAX_USER_ID_CHARS)?;
        }
        let mut state = self.open_state()?;
        let before = state.identity.clone();
        state.identity.identify(user_id.as_deref(), &traits);
        let mut envelope = Envelope::new(reserved::IDENTIFY, traits);
        envelope.user_id.clone_from(&state.identity.user_id);
        match self.enqueue(&mut state, envelope) {
            Ok(id) => {
                save_identity(&mut state);
                Ok(id)
            }
            Err(error) => {
                // An `$identify` the queue refuses (over 32 KiB, say) changes nothing.
                state.identity = before;
                Err(error)
            }
        }
    }

    /// Queues a `$group` event: the user belongs to `group_id`, described by `traits_json`.
    ///
    /// # Errors
    /// As [`TributaryClient::track`].
    pub fn group(
        &self,
        group_id: String,
        traits_json: String,
    ) -> Result<Option<String>, TributaryError> {
        let traits = parse_object("traits_json", &traits_json)?;
        self.record(Envelope::group(group_id, traits))
    }

    /// Queues an `$alias` event: the current user (or anonymous id) is now `user_id`, which
    /// becomes the user id of later events. Persisted.
    ///
    /// # Errors
    /// `InvalidInput` for an empty or too long user id; `Closed`.
    pub fn alias(&self, user_id: String) -> Result<Option<String>, TributaryError> {
        check_text("user_id", &user_id, MAX_USER_ID_CHARS)?;
        let mut state = self.open_state()?;
        let previous = state
            .identity
            .user_id
            .clone()
            .unwrap_or_else(|| state.identity.anonymous_id.clone());
        let envelope = Envelope::alias(user_id.clone(), previous);
        let id = self.enqueue(&mut state, envelope)?;
        state.identity.user_id = Some(user_id);
        save_identity(&mut state);
        Ok(id)
    }

    /// Forgets the user (a logout): a new anonymous id, no user id, no traits. Queued events
    /// keep the identity they were tracked with.
    pub fn reset(&self) {
        let mut state = self.shared.lock();
        let mut rng = state.rng.clone();
        state.identity.reset(&mut rng);
        state.rng = rng;
        save_identity(&mut state);
        state.changed(&self.shared);
    }

    /// Stops (`true`) or resumes tracking. While opted out, events are ignored (counted in
    /// `ignored_opted_out`) and nothing new is queued; events queued before are still sent.
    /// Persisted.
    pub fn set_opted_out(&self, opted_out: bool) {
        let mut state = self.shared.lock();
        state.opted_out = opted_out;
        state
            .meta_writes
            .push((OPTED_OUT_KEY.into(), opted_out.to_string()));
        state.changed(&self.shared);
    }

    /// Whether tracking is opted out.
    pub fn is_opted_out(&self) -> bool {
        self.shared.lock().opted_out
    }

    /// The install's anonymous id (stable until `reset`).
    pub fn anonymous_id(&self) -> String {
        self.shared.lock().identity.anonymous_id.clone()
    }

    /// The user id set by `identify` or `alias`, until `reset`.
    pub fn user_id(&self) -> Option<String> {
        self.shared.lock().identity.user_id.clone()
    }

    /// Merges `context_json` (a JSON object) into the context of later events, replacing keys
    /// it names — for values that change while the app runs, such as `network` or `locale`.
    ///
    /// # Errors
    /// `InvalidInput` when it is not a JSON object.
    pub fn update_context(&self, context_json: String) -> Result<(), TributaryError> {
        let update = parse_object("context_json", &context_json)?;
        let mut state = self.shared.lock();
        state.context.extend(update);
        Ok(())
    }

    /// Asks for everything queued to be sent now (subject to backoff) and returns at once.
    pub fn flush(&self) {
        let mut state = self.shared.lock();
        state.queue.request_flush();
        state.changed(&self.shared);
    }

    /// Sends everything queued now and waits until it is delivered. Blocks: call it off the
    /// main thread (a test, a background task about to end).
    ///
    /// # Errors
    /// `Network` when an upload failed while waiting, or at once when the queue is backing off
    /// after earlier failures and its next attempt comes after the timeout (the events stay
    /// queued and are retried); `Timeout` after `timeout_millis`; `Closed`.
    pub fn flush_blocking(&self, timeout_millis: u64) -> Result<(), TributaryError> {
        let deadline = Instant::now() + Duration::from_millis(timeout_millis);
        let mut state = self.open_state()?;
        state.queue.request_flush();
        let target = state.queue.last_seq();
        let failures = state.failures;
        state.changed(&self.shared);
        loop {
            if state
                .queue
                .oldest_queued_seq()
                .is_none_or(|oldest| oldest > target)
            {
                return Ok(());
            }
            if state.failures > failures {
                let reason = state.last_failure.clone().unwrap_or_default();
                return Err(TributaryError::Network { reason });
            }
            if state.closed {
                return Err(TributaryError::Closed);
            }
            if let Some(reason) = self.backoff_outlasts(&state, deadline) {
                return Err(TributaryError::Network { reason });
            }
            state = self.wait_until(state, deadline, timeout_millis)?;
        }
    }

    /// Waits until every event tracked before the call is written to the store (it then
    /// survives the process being killed). Blocks: for tests and for apps about to be killed.
    ///
    /// # Errors
    /// `Storage` when a store write failed meanwhile (the events are kept in memory and sent);
    /// `Timeout`; `Closed`.
    pub fn wait_until_stored(&self, timeout_millis: u64) -> Result<(), TributaryError> {
        let deadline = Instant::now() + Duration::from_millis(timeout_millis);
        let mut state = self.shared.lock();
        let target = state.queue.last_seq();
        let store_errors = state.store_errors;
        state.changed(&self.shared);
        loop {
            // A failed write still lets `stored_through` move on (the events stay in memory):
            // look at the errors first.
            if state.store_errors > store_errors {
                return Err(TributaryError::Storage {
                    reason: "a store write failed".into(),
                });
            }
            if state.stored_through >= target && state.meta_writes.is_empty() {
                return Ok(());
            }
            if state.driver_done {
                return Err(TributaryError::Closed);
            }
            state = self.wait_until(state, deadline, timeout_millis)?;
        }
    }

    /// Sets (or with `None` removes) the app's listener: it is told of every delivery, drop,
    /// eviction, retry and pause from now on, on the client's thread (return quickly).
    pub fn set_listener(&self, listener: Option<Arc<dyn DeliveryListener>>) {
        let mut state = self.shared.lock();
        state.listener = listener.map(Listener);
        if state.listener.is_none() {
            state.notifications.clear();
        }
    }

    /// What the client has done since it was opened.
    pub fn stats(&self) -> ClientStats {
        let state = self.shared.lock();
        let retry = state.queue.retry_state();
        ClientStats::new(
            state.queue.counters(),
            state.queue.len(),
            state.store_errors,
            state.ignored_opted_out,
            retry.consecutive_failures,
            retry.paused,
        )
    }

    /// Writes what is pending to the store and stops the driver. Undelivered events stay in the
    /// store for the next start. Later calls that queue events fail with `Closed`. Blocks for
    /// the pending writes; called by the destructor too.
    pub fn shutdown(&self) {
        {
            let mut state = self.shared.lock();
            state.closed = true;
            state.changed(&self.shared);
        }
        let driver = self
            .driver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(driver) = driver {
            // A driver that panicked already left the store consistent (transactions).
            let _ = driver.join();
            release_store(&self.store_key);
        }
    }
}

impl TributaryClient {
    pub(crate) fn open(
        config: &ClientConfig,
        uploader: Arc<dyn Uploader>,
        clock: Clock,
    ) -> Result<Arc<Self>, TributaryError> {
        Self::open_settings(config.check()?, uploader, clock)
    }

    fn open_settings(
        settings: crate::config::Settings,
        uploader: Arc<dyn Uploader>,
        clock: Clock,
    ) -> Result<Arc<Self>, TributaryError> {
        let path = Path::new(&settings.store_path);
        if let Some(folder) = path
            .parent()
            .filter(|folder| !folder.as_os_str().is_empty())
        {
            std::fs::create_dir_all(folder).map_err(|error| TributaryError::Storage {
                reason: format!("cannot create the store's folder ({:?})", error.kind()),
            })?;
        }
        let store_key = claim_store(path)?;
        let opened = Self::open_claimed(settings, uploader, clock, store_key.clone());
        if opened.is_err() {
            release_store(&store_key);
        }
        opened
    }

    fn open_claimed(
        settings: crate::config::Settings,
        uploader: Arc<dyn Uploader>,
        clock: Clock,
        store_key: PathBuf,
    ) -> Result<Arc<Self>, TributaryError> {
        let path = Path::new(&settings.store_path);
        let storage = |error| TributaryError::from(&error);
        let mut store = SqliteStore::open(path, Durability::ProcessCrash).map_err(storage)?;
        let loaded = store.load().map_err(storage)?;
        let mut rng = fastrand::Rng::new();
        let mut meta_writes = Vec::new();
        let saved_identity = store
            .meta(IDENTITY_KEY)
            .map_err(storage)?
            .and_then(|json| serde_json::from_str::<Identity>(&json).ok());
        let identity = match saved_identity {
            Some(identity) => identity,
            None => {
                let identity = Identity::generate(&mut rng);
                meta_writes.push((IDENTITY_KEY.to_owned(), identity_json(&identity)));
                identity
            }
        };
        let opted_out = store.meta(OPTED_OUT_KEY).map_err(storage)?.as_deref() == Some("true");
        let app_version = store.meta(APP_VERSION_KEY).map_err(storage)?;
        let app_build = store.meta(APP_BUILD_KEY).map_err(storage)?;

        let mut queue = DeliveryQueue::new(settings.policy.clone(), true, rng.u64(..));
        queue.restore(loaded.records, loaded.corrupt, loaded.retry_state);
        let mut context = settings.context.clone();
        context.entry("library").or_insert_with(
            || json!({"name": "tributary-mobile", "version": env!("CARGO_PKG_VERSION")}),
        );
        let state = State {
            queue,
            identity,
            opted_out,
            context,
            rng,
            meta_writes,
            app_version,
            app_build,
            dirty: true,
            closed: false,
            driver_done: false,
            stored_through: 0,
            store_errors: 0,
            ignored_opted_out: 0,
            failures: 0,
            last_failure: None,
            listener: None,
            notifications: std::collections::VecDeque::new(),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changed: Condvar::new(),
            clock,
        });
        let source = settings.source.clone();
        let driver = Driver {
            shared: shared.clone(),
            store,
            uploader,
            settings,
        };
        let handle = std::thread::Builder::new()
            .name("tributary-driver".into())
            .spawn(move || driver.run())
            .map_err(|error| TributaryError::Storage {
                reason: format!("cannot start the client's thread ({:?})", error.kind()),
            })?;
        Ok(Arc::new(Self {
            shared,
            source,
            driver: Mutex::new(Some(handle)),
            store_key,
        }))
    }

    /// Stamps an event with the identity, the source and the context, and queues it.
    pub(crate) fn record(&self, envelope: Envelope) -> Result<Option<String>, TributaryError> {
        let mut state = self.open_state()?;
        self.enqueue(&mut state, envelope)
    }

    fn enqueue(
        &self,
        state: &mut State,
        mut envelope: Envelope,
    ) -> Result<Option<String>, TributaryError> {
        if state.opted_out {
            state.ignored_opted_out += 1;
            return Ok(None);
        }
        state.identity.apply_to(&mut envelope);
        if envelope.source.is_none() {
            envelope.source = Some(self.source.clone());
        }
        for (key, value) in &state.context {
            if !envelope.context.contains_key(key) {
                envelope.context.insert(key.clone(), value.clone());
            }
        }
        let now = self.shared.clock.now();
        let queued = state.queue.enqueue(envelope, now);
        // A refused event is a notification too: wake the driver either way.
        state.changed(&self.shared);
        Ok(Some(queued?))
    }

    pub(crate) fn open_state(&self) -> Result<std::sync::MutexGuard<'_, State>, TributaryError> {
        let state = self.shared.lock();
        if state.closed {
            return Err(TributaryError::Closed);
        }
        Ok(state)
    }

    /// Why waiting is pointless: no upload is in flight and the next attempt (a backoff after
    /// earlier failures, maybe from before a restart) comes after `deadline`.
    fn backoff_outlasts(&self, state: &State, deadline: Instant) -> Option<String> {
        if state.queue.uploads_in_flight() > 0 {
            return None;
        }
        let not_before = state.queue.retry_state().not_before()?;
        let now = self.shared.clock.now();
        let left = deadline.saturating_duration_since(Instant::now());
        if not_before <= now.saturating_add(left) {
            return None;
        }
        let wait = not_before.saturating_duration_since(now).as_secs();
        Some(match &state.last_failure {
            Some(failure) => format!("{failure}; next attempt in {wait} s"),
            None => format!("retrying after earlier failures; next attempt in {wait} s"),
        })
    }

    fn wait_until<'a>(
        &self,
        state: std::sync::MutexGuard<'a, State>,
        deadline: Instant,
        timeout_millis: u64,
    ) -> Result<std::sync::MutexGuard<'a, State>, TributaryError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(TributaryError::Timeout {
                millis: timeout_millis,
            });
        }
        Ok(self.shared.wait(state, left))
    }
}

impl Drop for TributaryClient {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn identity_json(identity: &Identity) -> String {
    serde_json::to_string(identity).unwrap_or_else(|_| Value::Null.to_string())
}

fn save_identity(state: &mut State) {
    let json = identity_json(&state.identity);
    state.meta_writes.push((IDENTITY_KEY.into(), json));
}

#[cfg(feature = "test-clock")]
#[uniffi::export]
impl TributaryClient {
    /// As [`TributaryClient::new`], with every timestamp, flush interval and backoff read from
    /// `clock` (test builds only: feature `test-clock`).
    ///
    /// # Errors
    /// As [`TributaryClient::new`].
    #[uniffi::constructor]
    pub fn with_clock(
        config: ClientConfig,
        uploader: Arc<dyn Uploader>,
        clock: Arc<crate::clock::ManualClock>,
    ) -> Result<Arc<Self>, TributaryError> {
        Self::open(&config, uploader, Clock::Manual(clock))
    }

    /// As [`TributaryClient::new`] (or [`TributaryClient::with_clock`] when `clock` is given),
    /// with `policy`'s changes to the mobile defaults on top of `config`'s: the conformance
    /// suite's scenarios name delays and limits `ClientConfig` does not offer (test builds
    /// only: feature `test-clock`).
    ///
    /// # Errors
    /// As [`TributaryClient::new`]; `InvalidInput` naming a count of zero in `policy`.
    #[uniffi::constructor]
    pub fn with_policy(
        config: ClientConfig,
        uploader: Arc<dyn Uploader>,
        clock: Option<Arc<crate::clock::ManualClock>>,
        policy: crate::policy_overrides::PolicyOverrides,
    ) -> Result<Arc<Self>, TributaryError> {
        let mut settings = config.check()?;
        settings.policy = policy.apply(settings.policy)?;
        let clock = clock.map_or(Clock::System, Clock::Manual);
        Self::open_settings(settings, uploader, clock)
    }
}
