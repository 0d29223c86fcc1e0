//! The producer's task: it routes user records to their predicted shard, aggregates them,
//! collects Kinesis records into `PutRecords` calls within each shard's budget, retries what
//! failed with per-shard backoff, expires what outlived its TTL, and answers flush and
//! shutdown.
//!
//! # Invariants
//! - Every user record accepted by `send` ends exactly once: put (its handle gets the shard and
//!   sequence number), or failed (its handle gets the reason, its data and every attempt) —
//!   expired, unsent at shutdown, or in flight when the shutdown deadline passed.
//! - A record is never in flight twice at once, and only the entries Kinesis refused are
//!   retried; a refused entry's shard backs off (exponential ceiling, full jitter) before it is
//!   sent to again.
//! - A record still waiting once its TTL has passed is failed within 100 ms.
//! - Records handed over are taken from the staging at most once per `take_interval`
//!   (`max_buffered_time` / 10, at most 10 ms) while they keep coming, at once after a quiet
//!   spell, and at once by a flush or shutdown: the task wakes for a burst of records a few
//!   times, not once per record.
//! - Every `PutRecords` holds at most `collection_max_count` entries and
//!   `collection_max_bytes`; every shard gets at most its token bucket's budget.
//! - A shard with a backlog (more Kinesis records ready than its budget lets go now) is sent to
//!   at most once per `BACKLOG_PACE` (250 ms) by a request that is not full, with everything
//!   its budget allows then: under saturation the budget (which a bucket keeps for a second)
//!   goes out in a few large requests instead of one small request per refill, at no cost in
//!   throughput; its records, already waiting for budget, wait at most that much longer. The
//!   records of a backlogged shard never make a request "full" before its pace has passed, and
//!   a flush keeps the pace (only a shutdown, against its deadline, does not). A shard without
//!   a backlog sends as soon as its records are due.
//! - Buffer permits (records and bytes) are returned when a record ends, so `send` waits only
//!   while the buffer really is full.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tributary_core::policy::{exponential_ceiling, full_jitter};

use super::ShutdownReport;
use super::aggregator::{Aggregation, AttemptOutcome, KinesisRecord, Pending, ShardState};
use super::api::{Api, EntryResult, RequestError};
use super::config::Config;
use super::metrics::{Metrics, Observations, add};
use super::outcome::{FailureReason, PutOutcome, RecordFailure};
use super::shard_map::{ShardMap, ShardRange};
use super::spool::Spool;
use super::staging::{Batch, Staged, Staging};
use crate::Error;

const COMMAND_BATCH: usize = 1024;
/// How long records go on being sent after every handle was dropped without `shutdown`.
const IMPLICIT_SHUTDOWN: Duration = Duration::from_secs(10);
/// The shortest time between two `ListShards`.
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// How long after a failed `ListShards` it is tried again.
const REFRESH_RETRY: Duration = Duration::from_secs(5);
/// How often waiting records are checked against their TTL, at most.
const EXPIRY_GRANULARITY: Duration = Duration::from_millis(100);
/// The longest time between two takes from the staging while records keep coming.
const MAX_TAKE_INTERVAL: Duration = Duration::from_millis(10);
/// The shortest time between two requests that are not full, while a shard has a backlog: a
/// quarter of the second of budget a shard's bucket holds goes out at once.
const BACKLOG_PACE: Duration = Duration::from_millis(250);
/// Kinesis's error code for a shard over its limits.
const THROTTLED: &str = "ProvisionedThroughputExceededException";

pub(crate) enum Command {
    Flush(oneshot::Sender<Result<(), Error>>),
    Shutdown {
        deadline: Instant,
        reply: oneshot::Sender<ShutdownReport>,
    },
}

/// What the producer's handles and its task share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) records: Semaphore,
    pub(crate) bytes: Semaphore,
    pub(crate) metrics: Metrics,
    pub(crate) staging: Staging,
}

struct InFlight {
    records: Vec<KinesisRecord>,
    started: Instant,
    started_at: SystemTime,
}

type RequestResult = (Result<Vec<EntryResult>, RequestError>, Duration);

/// Records accepted between two flushes, and how many of them are not done.
struct Epoch {
    id: u64,
    outstanding: u64,
    failed: u64,
}

struct PendingFlush {
    epoch: u64,
    failed: u64,
    reply: oneshot::Sender<Result<(), Error>>,
}

struct PendingShutdown {
    deadline: Instant,
    reply: Option<oneshot::Sender<ShutdownReport>>,
}

pub(crate) struct Driver {
    config: Config,
    aggregation: Aggregation,
    api: Api,
    commands: mpsc::UnboundedReceiver<Command>,
    commands_open: bool,
    /// The batch taken from the staging last time, emptied (kept for its capacity).
    staged: Batch,
    /// Whether records landed in the staging since the last take.
    staged_waiting: bool,
    last_take: Instant,
    take_interval: Duration,
    /// When the last `PutRecords` started.
    last_start: Option<Instant>,
    shared: Arc<Shared>,
    map: ShardMap,
    /// One per shard of `map`, then one for records no known shard holds.
    shards: Vec<ShardState>,
    shard_index: HashMap<Arc<str>, usize>,
    requests: JoinSet<RequestResult>,
    in_flight: HashMap<tokio::task::Id, InFlight>,
    refresh: JoinSet<Result<Vec<ShardRange>, RequestError>>,
    refresh_wanted: bool,
    refresh_at: Option<Instant>,
    last_refresh: Option<Instant>,
    epochs: VecDeque<Epoch>,
    flushes: Vec<PendingFlush>,
    shutdown: Option<PendingShutdown>,
    next_expiry: Option<Instant>,
    round_robin: usize,
    rng: fastrand::Rng,
    spool: Option<Spool>,
    spool_deletes: Vec<u64>,
    released_records: usize,
    released_bytes: usize,
    unsent_at_shutdown: usize,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: Config,
        api: Api,
        commands: mpsc::UnboundedReceiver<Command>,
        shared: Arc<Shared>,
        shards: Option<Vec<ShardRange>>,
        spool: Option<Spool>,
        restored: Vec<Pending>,
    ) -> Self {
        let aggregation = Aggregation {
            enabled: config.aggregation,
            max_bytes: config.aggregation_max_bytes,
            max_count: config.aggregation_max_count,
            max_buffered_time: config.max_buffered_time,
            compress: config.record_compression == super::RecordCompression::Gzip,
        };
        let now = Instant::now();
        let mut driver = Self {
            aggregation,
            api,
            commands,
            commands_open: true,
            staged: Batch::default(),
            staged_waiting: false,
            last_take: now,
            take_interval: (config.max_buffered_time / 10).min(MAX_TAKE_INTERVAL),
            last_start: None,
            shared,
            map: ShardMap::default(),
            shards: vec![ShardState::new(
                None,
                aggregation,
                config.rate_limit_percent,
                now,
            )],
            shard_index: HashMap::new(),
            requests: JoinSet::new(),
            in_flight: HashMap::new(),
            refresh: JoinSet::new(),
            refresh_wanted: shards.is_none(),
            refresh_at: None,
            last_refresh: Some(now),
            epochs: VecDeque::from([Epoch {
                id: 0,
                outstanding: 0,
                failed: 0,
            }]),
            flushes: Vec::new(),
            shutdown: None,
            next_expiry: None,
            round_robin: 0,
            rng: fastrand::Rng::new(),
            spool,
            spool_deletes: Vec::new(),
            released_records: 0,
            released_bytes: 0,
            unsent_at_shutdown: 0,
            config,
        };
        if let Some(shards) = shards {
            driver.install_map(shards, now);
        }
        for record in restored {
            driver.accept_owned(record);
        }
        driver
    }

    pub(crate) async fn run(mut self) {
        let mut received = Vec::with_capacity(COMMAND_BATCH);
        loop {
            if self.staged_waiting && Instant::now() >= self.last_take + self.take_interval {
                self.take_staged().await;
            }
            let now = Instant::now();
            self.expire(now);
            self.dispatch(now);
            self.maybe_refresh(now);
            // Budget first: a flush answered here may be followed at once by a `send`.
            self.release().await;
            self.settle_epochs();
            if self.shutdown_is_over(now) {
                self.finish().await;
                return;
            }
            let wake = self.next_wake(now);
            tokio::select! {
                Some(joined) = self.requests.join_next_with_id(), if !self.requests.is_empty() => {
                    let (task, result) = match joined {
                        Ok((task, result)) => (task, result),
                        Err(error) => (error.id(), (Err(RequestError {
                            code: "TaskFailed".into(),
                            message: error.to_string(),
                        }), Duration::ZERO)),
                    };
                    if let Some(in_flight) = self.in_flight.remove(&task) {
                        self.completed(in_flight, result);
                    }
                }
                Some(joined) = self.refresh.join_next(), if !self.refresh.is_empty() => {
                    let result = joined.unwrap_or_else(|error| Err(RequestError {
                        code: "TaskFailed".into(),
                        message: error.to_string(),
                    }));
                    self.refreshed(result);
                }
                () = self.shared.staging.landed(), if !self.staged_waiting => {
                    self.staged_waiting = true;
                }
                count = self.commands.recv_many(&mut received, COMMAND_BATCH), if self.commands_open => {
                    // Records sent before a flush belong to its epoch.
                    self.take_staged().await;
                    if count == 0 {
                        self.commands_open = false;
                        self.begin_shutdown(Instant::now() + IMPLICIT_SHUTDOWN, None);
                    }
                    self.handle(&mut received);
                }
                () = sleep_until(wake), if wake.is_some() => {}
            }
        }
    }

    fn handle(&mut self, received: &mut Vec<Command>) {
        for command in received.drain(..) {
            match command {
                Command::Flush(reply) => {
                    let epoch = self.new_epoch();
                    self.flushes.push(PendingFlush {
                        epoch,
                        failed: 0,
                        reply,
                    });
                }
                Command::Shutdown { deadline, reply } => {
                    self.begin_shutdown(deadline, Some(reply));
                }
            }
        }
    }

    /// Takes the records `send` handed over since last time, writes them to the spool (if
    /// there is one) and accepts them.
    async fn take_staged(&mut self) {
        self.staged_waiting = false;
        self.last_take = Instant::now();
        self.shared.staging.take(&mut self.staged);
        if self.staged.is_empty() {
            return;
        }
        let ttl = self.config.record_ttl;
        // Taken out of `self` while its records (which borrow its bytes) are accepted.
        let mut batch = std::mem::take(&mut self.staged);
        let mut records: Vec<(Pending, &str, &[u8])> = batch
            .drain()
            .map(|(staged, key, data)| (staged_pending(staged, ttl), key, data))
            .collect();
        self.persist(&mut records).await;
        for (record, key, data) in records {
            self.accept(record, key, data);
        }
        self.staged = batch;
    }

    /// Writes the records just received to the spool, if there is one.
    async fn persist(&mut self, records: &mut [(Pending, &str, &[u8])]) {
        let Some(spool) = &mut self.spool else {
            return;
        };
        if records.is_empty() {
            return;
        }
        let rows = records
            .iter()
            .map(|(record, key, data)| (*key, record.explicit_hash_key.as_deref(), *data))
            .collect();
        match spool.persist(rows).await {
            Ok(seqs) => {
                for ((record, _, _), seq) in records.iter_mut().zip(seqs) {
                    record.spool_seq = Some(seq);
                }
            }
            Err(error) => {
                tracing::warn!(message = "spool write failed; records kept in memory", %error);
            }
        }
    }

    fn new_epoch(&mut self) -> u64 {
        let current = self.epochs.back().map_or(0, |epoch| epoch.id);
        self.epochs.push_back(Epoch {
            id: current + 1,
            outstanding: 0,
            failed: 0,
        });
        current
    }

    /// Accepts a record whose partition key and data are given apart from it.
    fn accept(&mut self, mut record: Pending, partition_key: &str, data: &[u8]) {
        if let Some(epoch) = self.epochs.back_mut() {
            epoch.outstanding += 1;
            record.epoch = epoch.id;
        }
        self.route(record, partition_key, data);
    }

    /// Accepts a record that holds its own partition key and data.
    fn accept_owned(&mut self, mut record: Pending) {
        let (key, data) = take_key_and_data(&mut record);
        self.accept(record, &key, &data);
    }

    fn route(&mut self, record: Pending, partition_key: &str, data: &[u8]) {
        self.next_expiry = Some(
            self.next_expiry
                .map_or(record.expires, |next| next.min(record.expires)),
        );
        let index = self.map.lookup(record.hash).unwrap_or(self.map.len());
        self.shards[index].add(record, partition_key, data, self.aggregation);
    }

    /// Routes again a record taken out of a Kinesis record (with its key and data).
    fn reroute(&mut self, mut record: Pending) {
        let (key, data) = take_key_and_data(&mut record);
        self.route(record, &key, &data);
    }

    fn forcing(&self) -> bool {
        !self.flushes.is_empty() || self.shutdown.is_some()
    }

    /// Seals due aggregates and starts `PutRecords` calls while there is something to send,
    /// room in flight, and budget in the shards.
    fn dispatch(&mut self, now: Instant) {
        let forcing = self.forcing();
        for shard in &mut self.shards {
            shard.seal_if_due(now, forcing);
        }
        if self.requests.len() >= self.config.max_in_flight_requests {
            return;
        }
        if !self.worth_a_request(now, forcing) {
            return;
        }
        while self.requests.len() < self.config.max_in_flight_requests {
            let batch = self.collect(now);
            if batch.is_empty() {
                break;
            }
            self.start(batch, now);
        }
    }

    /// Whether a request should start now: a shard's records are due (all are, during a flush
    /// or shutdown), or the records the shards may send now fill a request. A backlogged shard
    /// counts only once `BACKLOG_PACE` has passed since the last request (any request that
    /// starts before carries its records along), except during a shutdown.
    fn worth_a_request(&mut self, now: Instant, forcing: bool) -> bool {
        let paced =
            self.shutdown.is_none() && self.last_start.is_some_and(|at| now < at + BACKLOG_PACE);
        let (mut count, mut bytes) = (0, 0);
        for shard in &mut self.shards {
            if shard.ready.is_empty()
                || shard.backoff_until.is_some_and(|until| until > now)
                || (paced && shard.backlogged(now))
            {
                continue;
            }
            if forcing || shard.ready_due.is_some_and(|due| due <= now) {
                return true;
            }
            count += shard.ready.len();
            bytes += shard.ready_bytes;
        }
        count >= self.config.collection_max_count || bytes >= self.config.collection_max_bytes
    }

    /// One `PutRecords`' worth of Kinesis records, taken round-robin from the shards that are
    /// not backing off, within each shard's budget.
    fn collect(&mut self, now: Instant) -> Vec<KinesisRecord> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let shards = self.shards.len();
        self.round_robin = (self.round_robin + 1) % shards;
        'fill: for step in 0..shards {
            let shard = &mut self.shards[(self.round_robin + step) % shards];
            if shard.backoff_until.is_some_and(|until| until > now) {
                continue;
            }
            while let Some(front) = shard.ready.front() {
                let size = front.size();
                if batch.len() >= self.config.collection_max_count
                    || bytes + size > self.config.collection_max_bytes
                {
                    break 'fill;
                }
                if shard.id.is_some() && !shard.limiter.try_take(size, now) {
                    break;
                }
                bytes += size;
                if let Some(record) = shard.pop_ready() {
                    batch.push(record);
                }
            }
        }
        batch
    }

    fn start(&mut self, records: Vec<KinesisRecord>, now: Instant) {
        self.last_start = Some(now);
        let mut entries = Vec::with_capacity(records.len());
        for record in &records {
            // The request gets a copy: the records keep theirs, to be retried or returned.
            let entry = PutRecordsRequestEntry::builder()
                .data(Blob::new(record.data.clone()))
                .partition_key(record.partition_key.clone())
                .set_explicit_hash_key(record.explicit_hash_key.clone())
                .build();
            match entry {
                Ok(entry) => entries.push(entry),
                // Data and partition key are always set: unreachable, but never a panic.
                Err(error) => tracing::error!(message = "cannot build a PutRecords entry", %error),
            }
        }
        if entries.len() != records.len() {
            // Fail the whole request the ordinary way (retried, expired at TTL).
            entries.clear();
        }
        add(&self.shared.metrics.put_records_requests, 1);
        let api = self.api.clone();
        let handle = self.requests.spawn(async move {
            let started = Instant::now();
            let result = if entries.is_empty() {
                Err(RequestError {
                    code: "ConstructionFailure".into(),
                    message: "a PutRecords entry could not be built".into(),
                })
            } else {
                api.put_records(entries).await
            };
            (result, started.elapsed())
        });
        self.in_flight.insert(
            handle.id(),
            InFlight {
                records,
                started: now,
                started_at: SystemTime::now(),
            },
        );
    }

    fn completed(&mut self, in_flight: InFlight, (result, duration): RequestResult) {
        let now = Instant::now();
        let metrics = &self.shared.metrics;
        metrics
            .request_time_ms
            .observe(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
        let InFlight {
            records,
            started,
            started_at,
        } = in_flight;
        let results: Vec<EntryResult> = match result {
            Ok(results) => results,
            Err(error) => {
                tracing::debug!(message = "PutRecords failed", code = %error.code, error = %error.message);
                vec![
                    EntryResult::Failed {
                        code: error.code,
                        message: error.message,
                    };
                    records.len()
                ]
            }
        };
        for (record, result) in records.into_iter().zip(results) {
            let shard = record
                .shard
                .as_ref()
                .and_then(|id| self.shard_index.get(id).copied());
            match result {
                EntryResult::Put {
                    shard_id,
                    sequence_number,
                } => {
                    if let Some(index) = shard {
                        self.shards[index].failures = 0;
                    }
                    if record.shard.as_deref().is_some_and(|id| id != shard_id) {
                        // The map is stale (a reshard): reload it.
                        self.refresh_wanted = true;
                    }
                    let metrics = &self.shared.metrics;
                    add(&metrics.kinesis_records_put, 1);
                    add(
                        &metrics.kinesis_records_data_put_bytes,
                        record.data.len() as u64,
                    );
                    let members = record.members.len() as u64;
                    metrics.user_records_per_kinesis_record.observe(members);
                    add(&metrics.user_records_put, members);
                    // Observed once per Kinesis record, not once per user record.
                    let mut buffering = Observations::default();
                    let mut retries = Observations::default();
                    for (index, mut member) in (0u64..).zip(record.members) {
                        if member.attempts.is_empty() {
                            buffering.add(waited_ms(&member, started));
                        }
                        retries.add(member.attempts.len() as u64);
                        // The outcome is built only for a handle still waiting for it.
                        if let Some(reply) = member.reply.take().filter(|reply| !reply.is_closed())
                        {
                            member.record_attempt(
                                started,
                                started_at,
                                duration,
                                AttemptOutcome::Put {
                                    shard_id: &shard_id,
                                },
                            );
                            reply.send(Ok(PutOutcome {
                                shard_id: shard_id.clone(),
                                sequence_number: sequence_number.clone(),
                                sub_sequence_number: record.aggregated.then_some(index),
                                attempts: std::mem::take(&mut member.attempts),
                            }));
                        }
                        self.settle(&member, false);
                    }
                    let metrics = &self.shared.metrics;
                    metrics.buffering_time_ms.observe_all(&buffering);
                    metrics.retries_per_record.observe_all(&retries);
                }
                EntryResult::Failed { code, message } => {
                    self.shared.metrics.error(&code, 1);
                    // Records of no known shard back off together.
                    let index = shard.unwrap_or(self.shards.len() - 1);
                    self.back_off(index, &code, now);
                    for mut member in record.into_members() {
                        self.observe_first_attempt(&member, started);
                        member.record_attempt(
                            started,
                            started_at,
                            duration,
                            AttemptOutcome::Failed {
                                code: &code,
                                message: &message,
                            },
                        );
                        if member.expires <= now {
                            self.fail(member, FailureReason::Expired);
                        } else {
                            self.reroute(member);
                        }
                    }
                }
            }
        }
    }

    fn observe_first_attempt(&self, member: &Pending, started: Instant) {
        if member.attempts.is_empty() {
            self.shared
                .metrics
                .buffering_time_ms
                .observe(waited_ms(member, started));
        }
    }

    fn back_off(&mut self, index: usize, code: &str, now: Instant) {
        let shard = &mut self.shards[index];
        shard.failures = shard.failures.saturating_add(1);
        let ceiling = exponential_ceiling(
            self.config.backoff_base,
            self.config.backoff_cap,
            shard.failures,
        );
        let until = now + full_jitter(ceiling, &mut self.rng);
        // Entries of one response fail together: the latest decision stands.
        shard.backoff_until = Some(until);
        if code == THROTTLED {
            shard.limiter.exhaust(now);
        }
    }

    /// Gives a record up: its handle gets the failure with its data and attempts.
    fn fail(&mut self, mut member: Pending, reason: FailureReason) {
        let metrics = &self.shared.metrics;
        add(&metrics.user_records_failed, 1);
        if reason == FailureReason::Expired {
            add(&metrics.user_record_expired, 1);
        }
        metrics
            .retries_per_record
            .observe(member.attempts.len().saturating_sub(1) as u64);
        let persisted = reason != FailureReason::Expired && member.spool_seq.is_some();
        if let Some(reply) = member.reply.take() {
            reply.send(Err(RecordFailure {
                reason,
                partition_key: std::mem::take(&mut member.partition_key),
                data: std::mem::take(&mut member.data),
                attempts: std::mem::take(&mut member.attempts),
                persisted,
            }));
        }
        if persisted {
            member.spool_seq = None;
        }
        self.settle(&member, true);
    }

    /// A record ended: its buffer budget, epoch and spool row are released.
    fn settle(&mut self, member: &Pending, failed: bool) {
        self.released_records += 1;
        self.released_bytes += member.buffer_bytes;
        if let Some(epoch) = self
            .epochs
            .iter_mut()
            .find(|epoch| epoch.id == member.epoch)
        {
            epoch.outstanding = epoch.outstanding.saturating_sub(1);
            if failed {
                epoch.failed += 1;
            }
        }
        if let Some(seq) = member.spool_seq {
            self.spool_deletes.push(seq);
        }
    }

    /// Returns released buffer budget and deletes finished records from the spool.
    async fn release(&mut self) {
        if self.released_records > 0 {
            self.shared.records.add_permits(self.released_records);
            self.released_records = 0;
        }
        if self.released_bytes > 0 {
            self.shared.bytes.add_permits(self.released_bytes);
            self.released_bytes = 0;
        }
        if self.spool_deletes.is_empty() {
            return;
        }
        let seqs = std::mem::take(&mut self.spool_deletes);
        if let Some(spool) = &self.spool {
            if let Err(error) = spool.delete(seqs).await {
                tracing::warn!(message = "spool delete failed; records may be sent again", %error);
            }
        }
    }

    /// Fails the waiting records whose TTL has passed.
    fn expire(&mut self, now: Instant) {
        if self.next_expiry.is_none_or(|next| next > now) {
            return;
        }
        let mut keep = Vec::new();
        for index in 0..self.shards.len() {
            if self.shards[index]
                .earliest_expiry()
                .is_some_and(|expiry| expiry <= now)
            {
                for member in self.shards[index].drain() {
                    if member.expires <= now {
                        self.fail(member, FailureReason::Expired);
                    } else {
                        keep.push(member);
                    }
                }
            }
        }
        self.next_expiry = None;
        for member in keep {
            self.reroute(member);
        }
        let earliest = self
            .shards
            .iter()
            .filter_map(ShardState::earliest_expiry)
            .min();
        self.next_expiry = earliest.map(|at| at.max(now + EXPIRY_GRANULARITY));
    }

    fn maybe_refresh(&mut self, now: Instant) {
        if !self.refresh_wanted || !self.refresh.is_empty() {
            return;
        }
        let earliest = self
            .last_refresh
            .map_or(now, |last| last + REFRESH_INTERVAL)
            .max(self.refresh_at.unwrap_or(now));
        if earliest > now {
            self.refresh_at = Some(earliest);
            return;
        }
        self.refresh_wanted = false;
        self.refresh_at = None;
        self.last_refresh = Some(now);
        let api = self.api.clone();
        self.refresh.spawn(async move { api.list_shards().await });
    }

    fn refreshed(&mut self, result: Result<Vec<ShardRange>, RequestError>) {
        match result {
            Ok(shards) => {
                add(&self.shared.metrics.shard_map_refreshes, 1);
                self.install_map(shards, Instant::now());
            }
            Err(error) => {
                tracing::warn!(message = "ListShards failed; retrying", code = %error.code, error = %error.message);
                self.refresh_wanted = true;
                self.refresh_at = Some(Instant::now() + REFRESH_RETRY);
            }
        }
    }

    /// Replaces the shard map and re-routes every waiting record by it (shards that stay keep
    /// their budget and backoff).
    fn install_map(&mut self, shards: Vec<ShardRange>, now: Instant) {
        let map = match ShardMap::new(shards) {
            Ok(map) => map,
            Err(error) => {
                tracing::warn!(message = "unusable shard map; retrying", %error);
                self.refresh_wanted = true;
                self.refresh_at = Some(now + REFRESH_RETRY);
                return;
            }
        };
        if map == self.map {
            return;
        }
        let mut old: HashMap<Arc<str>, ShardState> = HashMap::new();
        let mut waiting = Vec::new();
        let mut unknown = None;
        for mut shard in self.shards.drain(..) {
            waiting.extend(shard.drain());
            match shard.id.clone() {
                Some(id) => {
                    old.insert(id, shard);
                }
                None => unknown = Some(shard),
            }
        }
        self.shard_index.clear();
        for (index, range) in map.shards().iter().enumerate() {
            let state = old.remove(&range.id).unwrap_or_else(|| {
                ShardState::new(
                    Some(range.id.clone()),
                    self.aggregation,
                    self.config.rate_limit_percent,
                    now,
                )
            });
            self.shard_index.insert(range.id.clone(), index);
            self.shards.push(state);
        }
        self.shards.push(unknown.unwrap_or_else(|| {
            ShardState::new(None, self.aggregation, self.config.rate_limit_percent, now)
        }));
        self.map = map;
        self.next_expiry = None;
        for member in waiting {
            self.reroute(member);
        }
    }

    /// Drops finished epochs and answers the flushes that are over.
    fn settle_epochs(&mut self) {
        while self.epochs.len() > 1 && self.epochs.front().is_some_and(|e| e.outstanding == 0) {
            if let Some(done) = self.epochs.pop_front() {
                for flush in &mut self.flushes {
                    if flush.epoch >= done.id {
                        flush.failed += done.failed;
                    }
                }
            }
        }
        let oldest = self.epochs.front().map_or(u64::MAX, |epoch| epoch.id);
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flushes)
            .into_iter()
            .partition(|flush| flush.epoch < oldest);
        self.flushes = waiting;
        for flush in done {
            let answer = if flush.failed == 0 {
                Ok(())
            } else {
                Err(Error::NotDelivered {
                    queued: 0,
                    cause: format!(
                        "{} records failed (their handles hold the attempts)",
                        flush.failed
                    ),
                })
            };
            let _ = flush.reply.send(answer);
        }
    }

    fn outstanding(&self) -> u64 {
        self.epochs.iter().map(|epoch| epoch.outstanding).sum()
    }

    fn begin_shutdown(
        &mut self,
        deadline: Instant,
        reply: Option<oneshot::Sender<ShutdownReport>>,
    ) {
        self.commands.close();
        self.shared.staging.close();
        self.shared.records.close();
        self.shared.bytes.close();
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

    fn shutdown_is_over(&self, now: Instant) -> bool {
        let Some(shutdown) = &self.shutdown else {
            return false;
        };
        now >= shutdown.deadline || (!self.commands_open && self.outstanding() == 0)
    }

    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let forcing = self.forcing();
        let room = self.requests.len() < self.config.max_in_flight_requests;
        let mut wake: Option<Instant> = None;
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                wake = Some(wake.map_or(at, |wake| wake.min(at)));
            }
        };
        let paced_until = self.last_start.map(|at| at + BACKLOG_PACE);
        for shard in &self.shards {
            consider(shard.open_due());
            if room {
                let mut at = shard.sendable_at(now, forcing);
                if self.shutdown.is_none() && shard.backlogged(now) {
                    at = at.map(|at| paced_until.map_or(at, |paced| at.max(paced)));
                }
                consider(at);
            }
        }
        consider(self.next_expiry);
        if self.staged_waiting {
            consider(Some(self.last_take + self.take_interval));
        }
        if self.refresh_wanted && self.refresh.is_empty() {
            consider(self.refresh_at);
        }
        consider(self.shutdown.as_ref().map(|shutdown| shutdown.deadline));
        // Never spin: anything due now was handled in this pass.
        wake.map(|at| at.max(now + Duration::from_micros(100)))
    }

    async fn finish(mut self) {
        // Records received just before the shutdown are given an outcome like the rest (the
        // staging is closed: nothing more comes in).
        self.take_staged().await;
        self.requests.abort_all();
        while self.requests.join_next().await.is_some() {}
        let in_flight: Vec<InFlight> = self.in_flight.drain().map(|(_, value)| value).collect();
        for request in in_flight {
            for record in request.records {
                for member in record.into_members() {
                    self.unsent_at_shutdown += 1;
                    self.fail(member, FailureReason::Unknown);
                }
            }
        }
        let mut waiting = Vec::new();
        for shard in &mut self.shards {
            waiting.extend(shard.drain());
        }
        for member in waiting {
            self.unsent_at_shutdown += 1;
            self.fail(member, FailureReason::Shutdown);
        }
        self.settle_epochs();
        self.release().await;
        let persisted = if self.spool.is_some() {
            self.unsent_at_shutdown
        } else {
            0
        };
        let report = ShutdownReport {
            metrics: self.shared.metrics.snapshot(),
            drained: self.unsent_at_shutdown == 0,
            unsent: self.unsent_at_shutdown,
            persisted,
        };
        if report.unsent > 0 {
            tracing::warn!(
                message = "shutdown: records not put (returned to their handles as failed)",
                unsent = report.unsent,
                persisted
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

/// A user record restored from the spool.
#[cfg(feature = "sqlite")]
pub(crate) fn pending(
    record: super::Record,
    hash: u128,
    config: &Config,
    reply: Option<super::handles::Reply>,
    buffer_bytes: usize,
) -> Pending {
    let now = Instant::now();
    Pending {
        partition_key: record.partition_key,
        explicit_hash_key: record.explicit_hash_key,
        hash,
        data: record.data,
        arrived: now,
        waiting_since: now,
        expires: now + config.record_ttl,
        attempts: Vec::new(),
        reply,
        epoch: 0,
        spool_seq: None,
        buffer_bytes,
    }
}

/// A user record as the staging handed it over (its key and data stay in the batch until they
/// are copied into an aggregate).
fn staged_pending(staged: Staged, ttl: Duration) -> Pending {
    Pending {
        partition_key: String::new(),
        explicit_hash_key: staged.explicit_hash_key,
        hash: staged.hash,
        data: Vec::new(),
        arrived: staged.arrived,
        waiting_since: staged.arrived,
        expires: staged.arrived + ttl,
        attempts: Vec::new(),
        reply: staged.reply,
        epoch: 0,
        spool_seq: None,
        buffer_bytes: staged.buffer_bytes,
    }
}

/// How long a record waited before its first attempt, in milliseconds.
fn waited_ms(member: &Pending, started: Instant) -> u64 {
    let waited = started
        .saturating_duration_since(member.arrived)
        .as_millis();
    u64::try_from(waited).unwrap_or(u64::MAX)
}

fn take_key_and_data(record: &mut Pending) -> (String, Vec<u8>) {
    (
        std::mem::take(&mut record.partition_key),
        std::mem::take(&mut record.data),
    )
}

impl Drop for Driver {
    fn drop(&mut self) {
        // A task that ends (or is dropped with its runtime) refuses later records, and the
        // handles of records it never took resolve as unknown.
        self.shared.staging.close_and_discard();
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}
