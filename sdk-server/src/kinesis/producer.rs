//! The public producer and its builder.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::{Semaphore, TryAcquireError, mpsc, oneshot};
use tokio::time::Instant;
use tributary_core::envelope::validation::check_event_size;
use tributary_core::envelope::{EventId, Problem, ValidationError};
use tributary_core::{Envelope, Timestamp, kpl};

use super::ShutdownReport;
use super::api::Api;
use super::config::{Config, WhenFull};
use super::driver::{Command, Driver, Shared};
use super::envelope_json::EnvelopeJson;
use super::handles;
use super::metrics::{Metrics, MetricsSnapshot};
use super::outcome::RecordHandle;
use super::spool::Spool;
use super::staging::{Staged, Staging};
use crate::event::EventParts;
use crate::{Error, Event};

/// What `shutdown` may take beyond its timeout: aborting requests and a last spool write.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// A user record of your own: data and a partition key, as the KPL's `addUserRecord` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The partition key (1 to 256 characters).
    pub partition_key: String,
    /// An explicit hash key (a decimal 128-bit integer) that overrides the partition key's
    /// hash for choosing the shard.
    pub explicit_hash_key: Option<String>,
    /// The data.
    pub data: Vec<u8>,
}

impl Record {
    /// A record of `data` under `partition_key`.
    pub fn new(partition_key: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Self {
            partition_key: partition_key.into(),
            explicit_hash_key: None,
            data: data.into(),
        }
    }

    /// Sets the explicit hash key.
    pub fn explicit_hash_key(mut self, key: impl Into<String>) -> Self {
        self.explicit_hash_key = Some(key.into());
        self
    }
}

/// Configures and starts a [`Producer`].
#[derive(Debug)]
pub struct ProducerBuilder {
    stream: String,
    config: Config,
    sdk_config: Option<aws_config::SdkConfig>,
    client: Option<aws_sdk_kinesis::Client>,
    #[cfg(feature = "sqlite")]
    spool: Option<(std::path::PathBuf, tributary_core::store::Durability)>,
}

impl ProducerBuilder {
    /// Every setting at once (default [`Config::default`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Use this AWS configuration instead of loading the standard one (environment, profile,
    /// `AWS_ENDPOINT_URL`, instance role, …) with `aws_config::load_defaults`. The producer
    /// still turns the SDK's retries off and applies `request_timeout`.
    pub fn sdk_config(mut self, config: &aws_config::SdkConfig) -> Self {
        self.sdk_config = Some(config.clone());
        self
    }

    /// Use this client as it is (its retry and timeout settings included).
    pub fn client(mut self, client: aws_sdk_kinesis::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Keep every accepted record in a SQLite file until its outcome is known, so that a
    /// restart loses nothing accepted: records left at shutdown (or by a crash) are sent by the
    /// next producer that opens the file.
    #[cfg(feature = "sqlite")]
    pub fn spool(
        mut self,
        path: impl Into<std::path::PathBuf>,
        durability: tributary_core::store::Durability,
    ) -> Self {
        self.spool = Some((path.into(), durability));
        self
    }

    /// Loads the AWS configuration (unless given), reads the stream's shard map, opens the
    /// spool, and starts the producer's task. A failing `ListShards` does not fail the build:
    /// records go out without aggregation until a reload succeeds.
    ///
    /// # Errors
    /// [`Error::NoRuntime`] outside a tokio runtime, [`Error::Config`] for invalid settings,
    /// [`Error::Store`] when the spool cannot be opened.
    pub async fn build(self) -> Result<Producer, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        self.config.check().map_err(Error::Config)?;
        if self.stream.is_empty() {
            return Err(Error::Config("the stream name is empty".into()));
        }
        let client = match self.client {
            Some(client) => client,
            None => {
                let sdk_config = match self.sdk_config {
                    Some(config) => config,
                    None => aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await,
                };
                let config = aws_sdk_kinesis::config::Builder::from(&sdk_config)
                    .retry_config(RetryConfig::disabled())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .operation_timeout(self.config.request_timeout)
                            .build(),
                    )
                    .build();
                aws_sdk_kinesis::Client::from_conf(config)
            }
        };
        let api = Api::new(client, self.stream.clone());
        let shards = match api.list_shards().await {
            Ok(shards) => Some(shards),
            Err(error) => {
                tracing::warn!(
                    message = "ListShards failed: sending without aggregation until it succeeds",
                    code = %error.code,
                    error = %error.message
                );
                None
            }
        };
        let shared = Arc::new(Shared {
            records: Semaphore::new(self.config.buffer_max_records),
            bytes: Semaphore::new(self.config.buffer_max_bytes),
            metrics: Metrics::default(),
            staging: Staging::default(),
        });
        let (spool, restored) = open_spool(
            #[cfg(feature = "sqlite")]
            self.spool,
            &self.config,
            &shared,
        )?;
        let (commands, receiver) = mpsc::unbounded_channel();
        let driver = Driver::new(
            self.config.clone(),
            api,
            receiver,
            shared.clone(),
            shards,
            spool,
            restored,
        );
        runtime.spawn(driver.run());
        let library = json!({"name": "tributary-server", "version": env!("CARGO_PKG_VERSION")});
        Ok(Producer {
            inner: Arc::new(Inner {
                commands,
                shared,
                config: self.config,
                stream: self.stream,
                envelope_json: EnvelopeJson::new(&library),
                library,
            }),
        })
    }
}

#[cfg(feature = "sqlite")]
fn open_spool(
    spool: Option<(std::path::PathBuf, tributary_core::store::Durability)>,
    config: &Config,
    shared: &Shared,
) -> Result<(Option<Spool>, Vec<super::aggregator::Pending>), Error> {
    let Some((path, durability)) = spool else {
        return Ok((None, Vec::new()));
    };
    let (spool, records) = Spool::open(path, durability)?;
    if !records.is_empty() {
        tracing::info!(
            message = "spool: sending records left by an earlier producer",
            count = records.len()
        );
    }
    let restored = records
        .into_iter()
        .map(|(seq, record)| {
            let hash = hash_key(&record.as_ref());
            // Restored records have no handle; they are counted, not held to the buffer.
            let mut pending = super::driver::pending(record, hash, config, None, 0);
            pending.spool_seq = Some(seq);
            pending
        })
        .collect::<Vec<_>>();
    super::metrics::add(&shared.metrics.user_records_received, restored.len() as u64);
    Ok((Some(spool), restored))
}

#[cfg(not(feature = "sqlite"))]
fn open_spool(
    _config: &Config,
    _shared: &Shared,
) -> Result<(Option<Spool>, Vec<super::aggregator::Pending>), Error> {
    Ok((None, Vec::new()))
}

/// Puts events and records into one Kinesis data stream. Cheap to clone; every clone feeds the
/// same task.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

struct Inner {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    config: Config,
    stream: String,
    library: Value,
    envelope_json: EnvelopeJson,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Producer")
            .field("stream", &self.inner.stream)
            .field("metrics", &self.metrics())
            .finish()
    }
}

impl Producer {
    /// A builder for a producer into the stream named `stream`.
    pub fn builder(stream: impl Into<String>) -> ProducerBuilder {
        ProducerBuilder {
            stream: stream.into(),
            config: Config::default(),
            sdk_config: None,
            client: None,
            #[cfg(feature = "sqlite")]
            spool: None,
        }
    }

    /// The stream's name.
    pub fn stream_name(&self) -> &str {
        &self.inner.stream
    }

    /// Sends an event: its envelope's JSON (`id` and `timestamp` filled in when absent) under
    /// its partition key — [`Event::partition_key`] if set, else `anonymous_id`, else
    /// `user_id`, else `id`. Waits while the buffer is full ([`WhenFull::Wait`], the default)
    /// or fails fast ([`WhenFull::FailFast`]).
    ///
    /// # Errors
    /// [`Error::InvalidEvent`] for an event that breaks an envelope rule, [`Error::InvalidRecord`]
    /// for a bad partition key, [`Error::BufferFull`] (fail-fast only), [`Error::Closed`] after
    /// `shutdown`.
    pub async fn send(&self, event: Event) -> Result<RecordHandle, Error> {
        let wait = self.inner.config.when_full == WhenFull::Wait;
        // The JSON is serialized into this thread's scratch buffer; it is copied into an owned
        // record only when `send` has to wait for room.
        let sent = self.with_event_record(event, |record| {
            let (hash, size) = check_record(&record)?;
            match acquire_now(&self.inner.shared, size) {
                Ok(()) => self.hand_over(record, hash, size).map(Sent::Now),
                Err(Error::BufferFull) if wait => Ok(Sent::Later(record.to_owned(), hash, size)),
                Err(error) => Err(error),
            }
        })??;
        match sent {
            Sent::Now(handle) => Ok(handle),
            Sent::Later(record, hash, size) => {
                acquire_waiting(&self.inner.shared, size).await?;
                self.hand_over(record.as_ref(), hash, size)
            }
        }
    }

    /// Sends an event without ever waiting: [`Error::BufferFull`] when the buffer is full.
    ///
    /// # Errors
    /// As [`Producer::send`].
    pub fn try_send(&self, event: Event) -> Result<RecordHandle, Error> {
        self.with_event_record(event, |record| {
            let (hash, size) = check_record(&record)?;
            acquire_now(&self.inner.shared, size)?;
            self.hand_over(record, hash, size)
        })?
    }

    /// Sends a record of your own (any data), as [`Producer::send`] does an event.
    ///
    /// # Errors
    /// As [`Producer::send`].
    pub async fn send_record(&self, record: Record) -> Result<RecordHandle, Error> {
        let (hash, size) = check_record(&record.as_ref())?;
        let shared = &self.inner.shared;
        match self.inner.config.when_full {
            WhenFull::FailFast => acquire_now(shared, size)?,
            WhenFull::Wait => acquire_waiting(shared, size).await?,
        }
        self.hand_over(record.as_ref(), hash, size)
    }

    /// Sends a record of your own without ever waiting.
    ///
    /// # Errors
    /// As [`Producer::try_send`].
    pub fn try_send_record(&self, record: Record) -> Result<RecordHandle, Error> {
        let (hash, size) = check_record(&record.as_ref())?;
        acquire_now(&self.inner.shared, size)?;
        self.hand_over(record.as_ref(), hash, size)
    }

    /// Sends everything buffered now, without waiting for `max_buffered_time`, and waits until
    /// every record sent before this call has an outcome. Bounded by `record_ttl` (plus a
    /// request timeout): by then every such record is put or has failed.
    ///
    /// # Errors
    /// [`Error::NotDelivered`] when some of those records failed (their handles hold the
    /// details); [`Error::Closed`] after `shutdown`.
    pub async fn flush(&self) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Flush(reply))
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// Stops accepting records, sends everything buffered, and waits until every record has an
    /// outcome or `timeout` has passed; then every record still unput resolves as failed
    /// ([`super::FailureReason::Shutdown`], or `Unknown` if it was in flight) and, with a
    /// spool, stays in it for the next producer. Returns within `timeout` plus half a second.
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let deadline = Instant::now() + timeout;
        let (reply, answer) = oneshot::channel();
        let fallback = || ShutdownReport {
            metrics: self.metrics(),
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

    /// The producer's metrics now (under the KPL's names; see
    /// [`MetricsSnapshot::to_prometheus`]).
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.shared.metrics.snapshot()
    }

    /// The metrics in the Prometheus text format, labelled with the stream's name.
    pub fn prometheus_metrics(&self) -> String {
        self.metrics().to_prometheus(&self.inner.stream)
    }

    /// Writes the event's envelope JSON into this thread's scratch buffer and calls `then` with
    /// the record. A plain event's JSON is written from its fields ([`EnvelopeJson`]); a
    /// reserved (`$`) event, whose data has rules of its own, goes through the `Envelope` and
    /// its validation.
    fn with_event_record<R>(
        &self,
        event: Event,
        then: impl FnOnce(RecordRef<'_>) -> R,
    ) -> Result<R, Error> {
        event.check()?;
        let mut event = event.into_parts();
        // The clock is read only for an event that lacks its time or id.
        let now = (event.timestamp.is_none() || event.id.is_none())
            .then(OffsetDateTime::now_utc)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let happened = *event.timestamp.get_or_insert(now);
        if event.id.is_none() {
            let at = Timestamp::from_datetime(happened)
                .or_else(|| Timestamp::from_datetime(now))
                .unwrap_or(Timestamp::from_unix_millis(0));
            let mut rng = fastrand::Rng::new();
            event.id = Some(EventId::new_v7(at, &mut rng).to_string());
        }
        let explicit_key = event.partition_key.take();
        let body = if event.name.starts_with('$') {
            Body::Reserved(self.reserved_envelope(event)?)
        } else {
            if event
                .context
                .get("traits")
                .is_some_and(|traits| !traits.is_object())
            {
                return Err(ValidationError::new("context.traits", Problem::NotAnObject).into());
            }
            Body::Plain(event)
        };
        SCRATCH.with(|scratch| {
            // Taken out while in use, so that a nested call (none is possible) would find an
            // empty buffer instead of a borrowed one.
            let mut data = scratch.take();
            data.clear();
            let written = match &body {
                Body::Reserved(envelope) => {
                    serde_json::to_writer(&mut data, envelope).map_err(|error| {
                        ValidationError::new("event", Problem::Malformed(error.to_string()))
                    })
                }
                Body::Plain(event) => self.inner.envelope_json.write(
                    event,
                    event.id.as_deref().unwrap_or_default(),
                    happened,
                    &mut data,
                ),
            };
            let result = written
                .map_err(Error::from)
                .and_then(|()| Ok(check_event_size(data.len())?))
                .map(|()| {
                    let partition_key = explicit_key.as_deref().unwrap_or_else(|| match &body {
                        Body::Reserved(envelope) => envelope.partition_key(),
                        Body::Plain(event) => event
                            .anonymous_id
                            .as_deref()
                            .or(event.user_id.as_deref())
                            .or(event.id.as_deref())
                            .unwrap_or_default(),
                    });
                    then(RecordRef {
                        partition_key,
                        explicit_hash_key: None,
                        data: &data,
                    })
                });
            if data.capacity() <= SCRATCH_KEEP_BYTES {
                scratch.set(data);
            }
            result
        })
    }

    /// A reserved event's envelope, checked by sdk-core's rules.
    fn reserved_envelope(&self, event: EventParts) -> Result<Envelope, Error> {
        let mut envelope = event.into_envelope();
        envelope.source = Some("server".to_owned());
        if !envelope.context.contains_key("library") {
            envelope
                .context
                .insert("library".into(), self.inner.library.clone());
        }
        envelope.validate()?;
        Ok(envelope)
    }

    fn hand_over(
        &self,
        record: RecordRef<'_>,
        hash: u128,
        size: usize,
    ) -> Result<RecordHandle, Error> {
        let (reply, handle) = handles::channel();
        let staged = Staged::new(
            record.explicit_hash_key.map(str::to_owned),
            hash,
            Some(reply),
            size,
        );
        let shared = &self.inner.shared;
        shared
            .staging
            .push(record.partition_key, record.data, staged, &shared.metrics)
            // Shut down between taking buffer budget and handing over: nothing was accepted.
            .map_err(|_| Error::Closed)?;
        Ok(handle)
    }
}

/// An event to write as its envelope's JSON.
enum Body {
    /// Written from its fields.
    Plain(EventParts),
    /// A reserved event, through its `Envelope`.
    Reserved(Envelope),
}

/// What `send` did with a record: handed it over, or kept it to wait for room.
enum Sent {
    Now(RecordHandle),
    Later(Record, u128, usize),
}

/// A record borrowed from wherever `send` built it.
#[derive(Debug, Clone, Copy)]
struct RecordRef<'a> {
    partition_key: &'a str,
    explicit_hash_key: Option<&'a str>,
    data: &'a [u8],
}

impl RecordRef<'_> {
    fn to_owned(self) -> Record {
        Record {
            partition_key: self.partition_key.to_owned(),
            explicit_hash_key: self.explicit_hash_key.map(str::to_owned),
            data: self.data.to_vec(),
        }
    }
}

impl Record {
    fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            partition_key: &self.partition_key,
            explicit_hash_key: self.explicit_hash_key.as_deref(),
            data: &self.data,
        }
    }
}

/// The largest scratch buffer a thread keeps between two events (a larger one, left by an
/// unusually large event, is freed).
const SCRATCH_KEEP_BYTES: usize = 64 * 1024;

thread_local! {
    /// Where `send` serializes an event's JSON before copying it into the hand-over batch.
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

fn permits(size: usize) -> u32 {
    u32::try_from(size).unwrap_or(u32::MAX)
}

async fn acquire_waiting(shared: &Shared, size: usize) -> Result<(), Error> {
    let records = shared.records.acquire().await.map_err(|_| Error::Closed)?;
    let bytes = shared
        .bytes
        .acquire_many(permits(size))
        .await
        .map_err(|_| Error::Closed)?;
    records.forget();
    bytes.forget();
    Ok(())
}

fn acquire_now(shared: &Shared, size: usize) -> Result<(), Error> {
    let error = |error: TryAcquireError| match error {
        TryAcquireError::Closed => Error::Closed,
        TryAcquireError::NoPermits => Error::BufferFull,
    };
    let records = shared.records.try_acquire().map_err(error)?;
    let bytes = shared
        .bytes
        .try_acquire_many(permits(size))
        .map_err(error)?;
    records.forget();
    bytes.forget();
    Ok(())
}

fn hash_key(record: &RecordRef<'_>) -> u128 {
    record
        .explicit_hash_key
        .and_then(kpl::parse_explicit_hash_key)
        .unwrap_or_else(|| kpl::partition_key_hash(record.partition_key))
}

/// Checks a record against Kinesis's rules; returns its hash key and its size.
fn check_record(record: &RecordRef<'_>) -> Result<(u128, usize), Error> {
    let chars = record.partition_key.chars().count();
    if chars == 0 || chars > kpl::MAX_PARTITION_KEY_CHARS {
        return Err(Error::InvalidRecord(format!(
            "the partition key must have 1 to 256 characters, not {chars}"
        )));
    }
    if let Some(key) = record.explicit_hash_key {
        if kpl::parse_explicit_hash_key(key).is_none() {
            return Err(Error::InvalidRecord(format!(
                "explicit hash key {key:?} is not an integer in 0..2^128"
            )));
        }
    }
    let size = record.data.len() + record.partition_key.len();
    if size > kpl::MAX_KINESIS_RECORD_BYTES {
        return Err(Error::InvalidRecord(format!(
            "{size} bytes of data and partition key, over Kinesis's 1 MiB"
        )));
    }
    Ok((hash_key(record), size))
}
