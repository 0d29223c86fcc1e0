//! Per-shard aggregation: user records bound for one predicted shard are packed into a KPL
//! aggregate until it is full or its oldest record has waited `max_buffered_time`; an
//! aggregate of one record goes out as that record, raw.
//!
//! # Invariants
//! - A user record's partition key and data are kept once: in the aggregate being built or in
//!   the Kinesis record that carries it (no allocation per record). Its [`Pending`] holds them
//!   only while it is outside any Kinesis record; whoever takes members out of a Kinesis record
//!   to retry or fail them gets them back with their key and data
//!   ([`KinesisRecord::into_members`], [`ShardState::drain`], which de-aggregate).
//! - With compression on, a Kinesis record is compressed once, when it becomes ready
//!   ([`ShardState::push_ready`]); its `data` is then what is put, and what Kinesis counts.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tributary_core::kpl::{self, AggregateBuilder};

use super::compression::{compress_record, decompress_record};
use super::handles::Reply;
use super::limiter::ShardLimiter;
use super::outcome::Attempt;

/// A user record inside the producer.
#[derive(Debug)]
pub(crate) struct Pending {
    /// Empty while the record is in an aggregate or Kinesis record (which holds the key).
    pub(crate) partition_key: String,
    pub(crate) explicit_hash_key: Option<String>,
    /// The hash key the record's shard is predicted from.
    pub(crate) hash: u128,
    /// Empty while the record is in an aggregate or Kinesis record (which holds the data).
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
    /// Whether `data` is gzip data (see `compression`).
    pub(crate) compressed: bool,
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

    /// Its user records, each with its partition key and data again.
    pub(crate) fn into_members(self) -> Vec<Pending> {
        let Self {
            mut members,
            partition_key,
            data,
            aggregated,
            compressed,
            ..
        } = self;
        let data = if compressed {
            match decompress_record(&data) {
                Ok(inflated) => inflated.into_owned(),
                // The producer compressed it: unreachable, but never a panic (the records
                // still get an outcome, without their data).
                Err(error) => {
                    tracing::error!(message = "cannot read back a compressed record", %error);
                    return members;
                }
            }
        } else {
            data
        };
        if aggregated {
            restore(&mut members, &data);
        } else if let [member] = members.as_mut_slice() {
            member.partition_key = partition_key;
            member.data = data;
        }
        members
    }
}

/// Gives the members of an aggregate their partition keys and data back, in order.
fn restore(members: &mut [Pending], aggregate: &[u8]) {
    match kpl::deaggregate("", None, aggregate) {
        Ok(records) if records.len() == members.len() => {
            for (member, record) in members.iter_mut().zip(records) {
                member.partition_key = record.partition_key.to_owned();
                member.data = record.data.to_vec();
            }
        }
        // The producer built the aggregate from these members: unreachable, but never a panic
        // (the records still get an outcome, without their data).
        Ok(records) => tracing::error!(
            message = "an aggregate holds another number of records than it was built with",
            records = records.len(),
            members = members.len()
        ),
        Err(error) => tracing::error!(message = "cannot read back an aggregate", %error),
    }
}

/// A shard's aggregate being filled.
#[derive(Debug)]
struct OpenAggregate {
    builder: AggregateBuilder,
    members: Vec<Pending>,
    /// Its first member's partition key (the aggregate's own).
    first_key: String,
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
    compress: bool,
}

/// How aggregation is configured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Aggregation {
    pub(crate) enabled: bool,
    pub(crate) max_bytes: usize,
    pub(crate) max_count: usize,
    pub(crate) max_buffered_time: Duration,
    /// Whether Kinesis records are compressed.
    pub(crate) compress: bool,
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
                first_key: String::new(),
                due: None,
            },
            ready: VecDeque::new(),
            ready_due: None,
            ready_bytes: 0,
            limiter: ShardLimiter::new(rate_limit_percent, now),
            failures: 0,
            backoff_until: None,
            compress: aggregation.compress,
        }
    }

    /// Adds a user record with its partition key and data (not in `record`): to the open
    /// aggregate, or straight to `ready` when not aggregating.
    pub(crate) fn add(
        &mut self,
        record: Pending,
        partition_key: &str,
        data: &[u8],
        aggregation: Aggregation,
    ) {
        let due = record.arrived + aggregation.max_buffered_time;
        if !aggregation.enabled || self.id.is_none() {
            let raw = KinesisRecord {
                partition_key: partition_key.to_owned(),
                explicit_hash_key: record.explicit_hash_key.clone(),
                data: data.to_vec(),
                shard: self.id.clone(),
                due,
                aggregated: false,
                compressed: false,
                members: vec![record],
            };
            self.push_ready(raw);
            return;
        }
        let explicit_hash_key = record.explicit_hash_key.as_deref();
        let fits = self.open.members.len() < aggregation.max_count
            && self
                .open
                .builder
                .try_add(partition_key, explicit_hash_key, data);
        if !fits {
            self.seal();
            self.open
                .builder
                .add(partition_key, explicit_hash_key, data);
        }
        if self.open.members.is_empty() {
            self.open.first_key.clear();
            self.open.first_key.push_str(partition_key);
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
            Some(mut member) if members.is_empty() => {
                let aggregate = self.open.builder.finish();
                restore(std::slice::from_mut(&mut member), &aggregate);
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
            let partition_key = self.open.first_key.clone();
            KinesisRecord {
                data: self.open.builder.finish(),
                partition_key,
                explicit_hash_key,
                shard: self.id.clone(),
                due,
                aggregated: true,
                compressed: false,
                members,
            }
        }
    }

    /// Queues a sealed Kinesis record to be sent, compressed first when compression is on.
    pub(crate) fn push_ready(&mut self, mut record: KinesisRecord) {
        if self.compress && !record.compressed {
            let (data, compressed) = compress_record(std::mem::take(&mut record.data));
            record.data = data;
            record.compressed = compressed;
        }
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

    /// Takes every user record out (open aggregate and ready queue), each with its partition
    /// key and data, for re-routing or failing.
    pub(crate) fn drain(&mut self) -> Vec<Pending> {
        self.open.due = None;
        let mut members = std::mem::take(&mut self.open.members);
        if members.is_empty() {
            self.open.builder.clear();
        } else {
            let aggregate = self.open.builder.finish();
            restore(&mut members, &aggregate);
        }
        self.ready_due = None;
        self.ready_bytes = 0;
        for record in self.ready.drain(..) {
            members.extend(record.into_members());
        }
        members
    }

    /// The earliest expiry of the records waiting here.
    pub(crate) fn earliest_expiry(&self) -> Option<Instant> {
        let open = self.open.members.iter().map(|member| member.expires).min();
        let ready = self.ready.iter().filter_map(KinesisRecord::expires).min();
        open.into_iter().chain(ready).min()
    }

    /// Whether more Kinesis records are ready than the shard's budget lets go now: then
    /// waiting longer costs the shard no throughput, and its records go out in fewer, larger
    /// requests.
    pub(crate) fn backlogged(&self, now: Instant) -> bool {
        self.id.is_some()
            && self.ready.len() > 1
            && !self.limiter.covers(self.ready.len(), self.ready_bytes, now)
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

/// A Kinesis record of one user record (its key and data move into it).
fn raw(mut member: Pending, shard: Option<Arc<str>>, due: Instant) -> KinesisRecord {
    KinesisRecord {
        partition_key: std::mem::take(&mut member.partition_key),
        explicit_hash_key: member.explicit_hash_key.clone(),
        data: std::mem::take(&mut member.data),
        shard,
        due,
        aggregated: false,
        compressed: false,
        members: vec![member],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(now: Instant) -> Pending {
        Pending {
            partition_key: String::new(),
            explicit_hash_key: None,
            hash: 7,
            data: Vec::new(),
            arrived: now,
            waiting_since: now,
            expires: now + Duration::from_secs(30),
            attempts: Vec::new(),
            reply: None,
            epoch: 0,
            spool_seq: None,
            buffer_bytes: 0,
        }
    }

    fn keys_and_data(members: &[Pending]) -> Vec<(&str, &[u8])> {
        members
            .iter()
            .map(|member| (member.partition_key.as_str(), member.data.as_slice()))
            .collect()
    }

    #[test]
    fn members_get_their_keys_and_data_back_from_aggregates() {
        let now = Instant::now();
        let aggregation = Aggregation {
            enabled: true,
            max_bytes: 1_000,
            max_count: 1_000,
            max_buffered_time: Duration::from_millis(100),
            compress: false,
        };
        let mut shard = ShardState::new(Some("shard-0".into()), aggregation, 100, now);
        let records = [("a", &b"one"[..]), ("b", b"two"), ("a", b"three")];
        for (key, data) in records {
            shard.add(pending(now), key, data, aggregation);
        }
        shard.seal();
        let aggregate = shard.pop_ready().unwrap();
        assert!(aggregate.aggregated);
        assert_eq!(aggregate.partition_key, "a");
        assert!(
            aggregate
                .members
                .iter()
                .all(|member| member.data.is_empty())
        );
        assert_eq!(keys_and_data(&aggregate.into_members()), records);

        // From the open aggregate, and from a ready one.
        for (key, data) in records {
            shard.add(pending(now), key, data, aggregation);
        }
        shard.seal();
        shard.add(pending(now), "c", b"four", aggregation);
        let drained = shard.drain();
        // The open aggregate's first, then the ready ones.
        let mut expected = vec![("c", &b"four"[..])];
        expected.extend(records);
        assert_eq!(keys_and_data(&drained), expected);

        // An aggregate of one record goes out raw.
        shard.add(pending(now), "d", b"five", aggregation);
        shard.seal();
        let raw = shard.pop_ready().unwrap();
        assert!(!raw.aggregated);
        assert_eq!(
            (raw.partition_key.as_str(), raw.data.as_slice()),
            ("d", &b"five"[..])
        );
        assert_eq!(keys_and_data(&raw.into_members()), [("d", &b"five"[..])]);
    }

    #[test]
    fn compressed_records_give_their_members_back() {
        let now = Instant::now();
        let aggregation = Aggregation {
            enabled: true,
            max_bytes: 100_000,
            max_count: 1_000,
            max_buffered_time: Duration::from_millis(100),
            compress: true,
        };
        let mut shard = ShardState::new(Some("shard-0".into()), aggregation, 100, now);
        let event = br#"{"name":"page_view","context":{"page":{"path":"/products"}}}"#.repeat(8);
        let records = [("a", event.as_slice()), ("b", event.as_slice())];
        for (key, data) in records {
            shard.add(pending(now), key, data, aggregation);
        }
        shard.seal();
        let aggregate = shard.pop_ready().unwrap();
        assert!(aggregate.aggregated && aggregate.compressed);
        assert!(aggregate.size() < event.len());
        let inflated = decompress_record(&aggregate.data).unwrap();
        assert!(kpl::is_aggregate(&inflated));
        assert_eq!(keys_and_data(&aggregate.into_members()), records);

        // A single record goes out raw, compressed too; drained from `ready`, it is whole again.
        shard.add(pending(now), "c", &event, aggregation);
        shard.seal();
        assert!(
            shard
                .ready
                .front()
                .is_some_and(|raw| raw.compressed && !raw.aggregated)
        );
        assert_eq!(keys_and_data(&shard.drain()), [("c", event.as_slice())]);
    }
}
