//! Per-shard aggregation: user records bound for one predicted shard are packed into a KPL
//! aggregate until it is full or its oldest record has waited `max_buffered_time`; an
//! aggregate of one record goes out as that record, raw.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tributary_core::kpl::AggregateBuilder;

use super::limiter::ShardLimiter;
use super::outcome::{Attempt, Reply};

/// A user record inside the producer.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) partition_key: String,
    pub(crate) explicit_hash_key: Option<String>,
    /// The hash key the record's shard is predicted from.
    pub(crate) hash: u128,
    pub(crate) data: Vec<u8>,
    /// When `send` accepted it.
    pub(crate) arrived: Instant,
    /// When it waited since: arrival, or the end of its last attempt.
    pub(crate) waiting_since: Instant,
    /// `arrived + record_ttl`.
    pub(crate) expires: Instant,
    pub(crate) attempts: Vec<Attempt>,
    pub(crate) reply: Option<Reply>,
    /// Its flush epoch (see the driver).
    pub(crate) epoch: u64,
    /// Its key in the spool, when there is one.
    pub(crate) spool_seq: Option<u64>,
    /// Bytes it holds of the buffer's budget.
    pub(crate) buffer_bytes: usize,
}

impl Pending {
    pub(crate) fn record_attempt(
        &mut self,
        started: Instant,
        started_at: SystemTime,
        duration: Duration,
        outcome: AttemptOutcome<'_>,
    ) {
        let (shard_id, error_code, error_message, success) = match outcome {
            AttemptOutcome::Put { shard_id } => (Some(shard_id.to_owned()), None, None, true),
            AttemptOutcome::Failed { code, message } => (
                None,
                Some(code.to_owned()),
                (!message.is_empty()).then(|| message.to_owned()),
                false,
            ),
        };
        self.attempts.push(Attempt {
            started_at,
            delay: started.saturating_duration_since(self.waiting_since),
            duration,
            shard_id,
            error_code,
            error_message,
            success,
        });
        self.waiting_since = started + duration;
    }
}

pub(crate) enum AttemptOutcome<'a> {
    Put { shard_id: &'a str },
    Failed { code: &'a str, message: &'a str },
}

/// One Kinesis record: an aggregate or a single user record.
#[derive(Debug)]
pub(crate) struct KinesisRecord {
    pub(crate) members: Vec<Pending>,
    pub(crate) partition_key: String,
    pub(crate) explicit_hash_key: Option<String>,
    pub(crate) data: Vec<u8>,
    /// The shard it was aggregated for (`None`: not aggregated, shard unknown).
    pub(crate) shard: Option<Arc<str>>,
    /// When it should be sent at the latest (its oldest member's arrival plus
    /// `max_buffered_time`).
    pub(crate) due: Instant,
    pub(crate) aggregated: bool,
}

impl KinesisRecord {
    /// What Kinesis counts of it: data and partition key.
    pub(crate) fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }

    /// The earliest expiry of its members.
    pub(crate) fn expires(&self) -> Option<Instant> {
        self.members.iter().map(|member| member.expires).min()
    }
}

/// A shard's aggregate being filled.
#[derive(Debug)]
struct OpenAggregate {
    builder: AggregateBuilder,
    members: Vec<Pending>,
    due: Option<Instant>,
}

/// Everything the producer keeps for one shard (or for records whose shard is unknown).
#[derive(Debug)]
pub(crate) struct ShardState {
    /// `None`: the records no known shard holds; they are sent one by one, unlimited.
    pub(crate) id: Option<Arc<str>>,
    open: OpenAggregate,
    pub(crate) ready: VecDeque<KinesisRecord>,
    /// The earliest `due` in `ready` (possibly earlier than it is, never later).
    pub(crate) ready_due: Option<Instant>,
    /// The bytes (as Kinesis counts them) in `ready`.
    pub(crate) ready_bytes: usize,
    pub(crate) limiter: ShardLimiter,
    /// Consecutive failed puts to this shard.
    pub(crate) failures: u32,
    pub(crate) backoff_until: Option<Instant>,
}

/// How aggregation is configured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Aggregation {
    pub(crate) enabled: bool,
    pub(crate) max_bytes: usize,
    pub(crate) max_count: usize,
    pub(crate) max_buffered_time: Duration,
}

impl ShardState {
    pub(crate) fn new(
        id: Option<Arc<str>>,
        aggregation: Aggregation,
        rate_limit_percent: u32,
        now: Instant,
    ) -> Self {
        Self {
            id,
            open: OpenAggregate {
                builder: AggregateBuilder::new(aggregation.max_bytes),
                members: Vec::new(),
                due: None,
            },
            ready: VecDeque::new(),
            ready_due: None,
            ready_bytes: 0,
            limiter: ShardLimiter::new(rate_limit_percent, now),
            failures: 0,
            backoff_until: None,
        }
    }

    /// Adds a user record: to the open aggregate, or straight to `ready` when not aggregating.
    pub(crate) fn add(&mut self, record: Pending, aggregation: Aggregation) {
        let due = record.arrived + aggregation.max_buffered_time;
        if !aggregation.enabled || self.id.is_none() {
            let raw = raw(record, self.id.clone(), due);
            self.push_ready(raw);
            return;
        }
        let fits = self.open.members.len() < aggregation.max_count
            && self.open.builder.try_add(
                &record.partition_key,
                record.explicit_hash_key.as_deref(),
                &record.data,
            );
        if !fits {
            self.seal();
            self.open.builder.add(
                &record.partition_key,
                record.explicit_hash_key.as_deref(),
                &record.data,
            );
        }
        self.open.due = Some(self.open.due.map_or(due, |open| open.min(due)));
        self.open.members.push(record);
    }

    /// When the open aggregate must be sealed.
    pub(crate) fn open_due(&self) -> Option<Instant> {
        self.open.due
    }

    /// Seals the open aggregate into `ready` if it is due by `now` (or always, with `force`).
    pub(crate) fn seal_if_due(&mut self, now: Instant, force: bool) {
        if self.open.due.is_some_and(|due| force || due <= now) {
            self.seal();
        }
    }

    /// Seals the open aggregate into `ready`.
    pub(crate) fn seal(&mut self) {
        let Some(due) = self.open.due.take() else {
            return;
        };
        let mut members = std::mem::take(&mut self.open.members);
        let record = match members.pop() {
            None => return,
            Some(member) if members.is_empty() => {
                self.open.builder.clear();
                raw(member, self.id.clone(), due)
            }
            Some(last) => {
                members.push(last);
                self.aggregate(members, due)
            }
        };
        self.push_ready(record);
    }

    fn aggregate(&mut self, members: Vec<Pending>, due: Instant) -> KinesisRecord {
        {
            let first = &members[0];
            // The aggregate goes where its first record's hash key points: the shard every
            // member was predicted for.
            let explicit_hash_key = Some(first.hash.to_string());
            let partition_key = first.partition_key.clone();
            KinesisRecord {
                data: self.open.builder.finish(),
                partition_key,
                explicit_hash_key,
                shard: self.id.clone(),
                due,
                aggregated: true,
                members,
            }
        }
    }

    pub(crate) fn push_ready(&mut self, record: KinesisRecord) {
        self.ready_due = Some(self.ready_due.map_or(record.due, |due| due.min(record.due)));
        self.ready_bytes += record.size();
        self.ready.push_back(record);
    }

    pub(crate) fn pop_ready(&mut self) -> Option<KinesisRecord> {
        let record = self.ready.pop_front()?;
        self.ready_bytes -= record.size();
        if self.ready.is_empty() {
            self.ready_due = None;
        }
        Some(record)
    }

    /// Takes every user record out (open aggregate and ready queue), for re-routing.
    pub(crate) fn drain(&mut self) -> Vec<Pending> {
        self.open.builder.clear();
        self.open.due = None;
        let mut members = std::mem::take(&mut self.open.members);
        self.ready_due = None;
        self.ready_bytes = 0;
        for record in self.ready.drain(..) {
            members.extend(record.members);
        }
        members
    }

    /// The earliest expiry of the records waiting here.
    pub(crate) fn earliest_expiry(&self) -> Option<Instant> {
        let open = self.open.members.iter().map(|member| member.expires).min();
        let ready = self.ready.iter().filter_map(KinesisRecord::expires).min();
        open.into_iter().chain(ready).min()
    }

    /// When the front of `ready` may be sent, given the backoff and the limiter (`None` when
    /// nothing is ready).
    pub(crate) fn sendable_at(&self, now: Instant, flushing: bool) -> Option<Instant> {
        let front = self.ready.front()?;
        let due = if flushing {
            now
        } else {
            self.ready_due.unwrap_or(front.due)
        };
        let limiter = self.limiter.ready_at(front.size(), now);
        let backoff = self.backoff_until.unwrap_or(now);
        Some(due.max(limiter).max(backoff))
    }
}

fn raw(member: Pending, shard: Option<Arc<str>>, due: Instant) -> KinesisRecord {
    KinesisRecord {
        partition_key: member.partition_key.clone(),
        explicit_hash_key: member.explicit_hash_key.clone(),
        data: member.data.clone(),
        shard,
        due,
        aggregated: false,
        members: vec![member],
    }
}
