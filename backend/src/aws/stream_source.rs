//! `tributary serve --source kinesis:STREAM`: the router outside Lambda, a long-running consumer
//! of a Kinesis stream that feeds local mode's pipeline.
//!
//! Each shard is read with `GetShardIterator`/`GetRecords`; each record is de-aggregated and its
//! envelopes checked exactly as the router function does ([`super::records`]); the events are
//! appended to the embedded log, from which local mode's delivery workers route and deliver them
//! (per-key order, retries, the local DLQ). Then the shard's checkpoint (the last sequence number
//! appended) is written to `kinesis-checkpoints.json` in the data dir.
//!
//! Resharding: `ListShards` is read again every [`SHARD_REFRESH`]; a shard is read only once
//! every parent shard has been read to its end, so a key's events keep their order across a split
//! or a merge; a closed shard read to its end is checkpointed as finished.
//!
//! # Invariants
//! - A checkpoint moves only after the records before it are durable in the log: a crash re-reads
//!   from the last checkpoint, and the log drops the ids it already has (its dedup window), so
//!   nothing is lost and nothing is stored twice.
//! - Poison records are never appended; they are written to `kinesis-poison.jsonl` in the data
//!   dir (the router's DLQ message shape) and the checkpoint passes them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tributary_core::Timestamp;

use super::records::{self, PoisonRecord};
use super::settings::{self, AwsError};
use crate::log::{EventLog, IncomingEvent};

/// The checkpoint file's name in the data dir.
pub const CHECKPOINT_FILE: &str = "kinesis-checkpoints.json";
/// Where poison records go, in the data dir.
pub const POISON_FILE: &str = "kinesis-poison.jsonl";
/// How often the shard list is read again.
pub const SHARD_REFRESH: Duration = Duration::from_secs(10);
/// The wait between reads of a shard that had nothing new (Kinesis allows 5 reads per second
/// per shard).
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// Where each shard was read to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoints {
    /// The stream.
    pub stream: String,
    /// Shard id → checkpoint.
    pub shards: BTreeMap<String, ShardCheckpoint>,
}

/// One shard's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ShardCheckpoint {
    /// Read up to and including this sequence number.
    At {
        /// The sequence number.
        sequence_number: String,
    },
    /// Closed and read to its end.
    Finished,
}

impl Checkpoints {
    /// Reads the file (empty checkpoints when it does not exist).
    ///
    /// # Errors
    /// When it exists but cannot be read, or belongs to another stream.
    pub fn load(path: &Path, stream: &str) -> Result<Self, AwsError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let checkpoints: Self = serde_json::from_str(&text)
                    .map_err(|error| AwsError::Config(format!("{}: {error}", path.display())))?;
                if checkpoints.stream != stream {
                    return Err(AwsError::Config(format!(
                        "{}: holds the checkpoints of stream {:?}, not {stream:?}; use another data dir",
                        path.display(),
                        checkpoints.stream
                    )));
                }
                Ok(checkpoints)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self {
                stream: stream.to_owned(),
                shards: BTreeMap::new(),
            }),
            Err(error) => Err(AwsError::Config(format!("{}: {error}", path.display()))),
        }
    }

    /// Writes the file durably (a temporary file, synced, renamed into place).
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let temporary = path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        if let Some(folder) = path.parent() {
            if let Ok(folder) = std::fs::File::open(folder) {
                let _ = folder.sync_all();
            }
        }
        Ok(())
    }
}

/// What the consumer has done, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SourceCounts {
    /// Kinesis records read.
    pub records: u64,
    /// Events appended (new to the log).
    pub appended: u64,
    /// Events the log already had.
    pub duplicates: u64,
    /// Poison records set aside.
    pub poison: u64,
}

#[derive(Debug)]
struct Shard {
    parents: Vec<String>,
    iterator: Option<String>,
    idle_until: tokio::time::Instant,
}

/// The consumer of one stream.
pub struct KinesisSource {
    client: aws_sdk_kinesis::Client,
    stream: String,
    data_dir: PathBuf,
    log: EventLog,
}

impl KinesisSource {
    /// A consumer of `stream` appending to `log`, with its files in `data_dir`.
    pub fn new(
        client: aws_sdk_kinesis::Client,
        stream: String,
        data_dir: PathBuf,
        log: EventLog,
    ) -> Self {
        Self {
            client,
            stream,
            data_dir,
            log,
        }
    }

    /// Reads until `shutdown` is cancelled.
    ///
    /// # Errors
    /// When the checkpoints cannot be read or written, or the log refuses events (then the
    /// checkpoint stays where it was). AWS errors are logged and retried.
    pub async fn run(self, shutdown: CancellationToken) -> Result<SourceCounts, AwsError> {
        let checkpoint_path = self.data_dir.join(CHECKPOINT_FILE);
        let mut checkpoints = Checkpoints::load(&checkpoint_path, &self.stream)?;
        let mut counts = SourceCounts::default();
        let mut shards: HashMap<String, Shard> = HashMap::new();
        let mut next_refresh = tokio::time::Instant::now();
        loop {
            if shutdown.is_cancelled() {
                return Ok(counts);
            }
            if tokio::time::Instant::now() >= next_refresh {
                match self.list_shards().await {
                    Ok(listed) => {
                        for (id, parents) in listed {
                            shards.entry(id).or_insert_with(|| Shard {
                                parents,
                                iterator: None,
                                idle_until: tokio::time::Instant::now(),
                            });
                        }
                    }
                    Err(error) => tracing::warn!(message = "ListShards failed", %error),
                }
                next_refresh = tokio::time::Instant::now() + SHARD_REFRESH;
            }
            let mut read_any = false;
            let mut ids: Vec<String> = shards.keys().cloned().collect();
            ids.sort();
            for id in ids {
                if matches!(checkpoints.shards.get(&id), Some(ShardCheckpoint::Finished)) {
                    continue;
                }
                let known: HashSet<&str> = shards.keys().map(String::as_str).collect();
                let ready = parents_done(&shards[&id].parents, &known, &checkpoints);
                if !ready || shards[&id].idle_until > tokio::time::Instant::now() {
                    continue;
                }
                match self
                    .read_shard(&id, &mut shards, &mut checkpoints, &mut counts)
                    .await
                {
                    Ok(true) => read_any = true,
                    Ok(false) => {}
                    Err(ShardError::Fatal(error)) => return Err(error),
                    Err(ShardError::Retry(error)) => {
                        tracing::warn!(message = "reading a shard failed; retrying", shard = %id, %error);
                        if let Some(shard) = shards.get_mut(&id) {
                            shard.iterator = None;
                            shard.idle_until = tokio::time::Instant::now() + Duration::from_secs(1);
                        }
                    }
                }
                if let Err(error) = checkpoints.save(&checkpoint_path) {
                    return Err(AwsError::Config(format!(
                        "{}: {error}",
                        checkpoint_path.display()
                    )));
                }
            }
            if !read_any {
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(counts),
                    () = tokio::time::sleep(IDLE_WAIT / 5) => {}
                }
            }
        }
    }

    /// Every shard of the stream with its parents.
    async fn list_shards(&self) -> Result<Vec<(String, Vec<String>)>, AwsError> {
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let request = match &token {
                Some(token) => self.client.list_shards().next_token(token),
                None => self.client.list_shards().stream_name(&self.stream),
            };
            let output = request
                .send()
                .await
                .map_err(|error| settings::call_error("kinesis ListShards", &error))?;
            for shard in output.shards() {
                let parents = [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
                    .into_iter()
                    .flatten()
                    .map(str::to_owned)
                    .collect();
                shards.push((shard.shard_id().to_owned(), parents));
            }
            token = output.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(shards);
            }
        }
    }

    /// One `GetRecords` of a shard; `Ok(true)` when it returned records.
    async fn read_shard(
        &self,
        id: &str,
        shards: &mut HashMap<String, Shard>,
        checkpoints: &mut Checkpoints,
        counts: &mut SourceCounts,
    ) -> Result<bool, ShardError> {
        let iterator = match shards.get(id).and_then(|shard| shard.iterator.clone()) {
            Some(iterator) => iterator,
            None => {
                let request = self
                    .client
                    .get_shard_iterator()
                    .stream_name(&self.stream)
                    .shard_id(id);
                let request = match checkpoints.shards.get(id) {
                    Some(ShardCheckpoint::At { sequence_number }) => request
                        .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                        .starting_sequence_number(sequence_number),
                    _ => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
                };
                request
                    .send()
                    .await
                    .map_err(|error| {
                        ShardError::Retry(settings::call_error("kinesis GetShardIterator", &error))
                    })?
                    .shard_iterator()
                    .unwrap_or_default()
                    .to_owned()
            }
        };
        let output = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(1_000)
            .send()
            .await
            .map_err(|error| {
                ShardError::Retry(settings::call_error("kinesis GetRecords", &error))
            })?;
        let mut events = Vec::new();
        let mut poison: Vec<PoisonRecord> = Vec::new();
        for record in output.records() {
            let arrival = record
                .approximate_arrival_timestamp()
                .map(|at| {
                    Timestamp::from_unix_millis(
                        u64::try_from(at.to_millis().unwrap_or(0)).unwrap_or(0),
                    )
                })
                .unwrap_or_else(crate::clock::now);
            let read = records::read_data(
                id,
                record.sequence_number(),
                record.partition_key(),
                record.data().as_ref(),
                arrival,
            );
            for event in read.events {
                let received_at = serde_json::from_str::<serde_json::Value>(&event.event.json)
                    .ok()
                    .and_then(|envelope| {
                        envelope["received_at"]
                            .as_str()
                            .and_then(|text| Timestamp::parse_rfc3339(text).ok())
                    })
                    .unwrap_or(arrival);
                events.push(IncomingEvent {
                    id: event.event.id,
                    name: event.event.name,
                    partition_key: event.event.partition_key,
                    received_at,
                    json: event.event.json.to_string(),
                });
            }
            poison.extend(read.poison);
        }
        counts.records += output.records().len() as u64;
        if !poison.is_empty() {
            self.set_aside(&poison).map_err(ShardError::Fatal)?;
            counts.poison += poison.len() as u64;
        }
        if !events.is_empty() {
            let outcome = self
                .log
                .append(events)
                .await
                .map_err(|error| ShardError::Fatal(AwsError::Config(error.to_string())))?;
            counts.appended += outcome.appended as u64;
            counts.duplicates += outcome.duplicates as u64;
        }
        if let Some(last) = output.records().last() {
            checkpoints.shards.insert(
                id.to_owned(),
                ShardCheckpoint::At {
                    sequence_number: last.sequence_number().to_owned(),
                },
            );
        }
        let shard = shards
            .get_mut(id)
            .ok_or_else(|| ShardError::Fatal(AwsError::Config(format!("shard {id} vanished"))))?;
        match output.next_shard_iterator() {
            Some(next) => {
                shard.iterator = Some(next.to_owned());
                if output.records().is_empty() {
                    shard.idle_until = tokio::time::Instant::now() + IDLE_WAIT;
                }
            }
            None => {
                tracing::info!(message = "shard read to its end", shard = %id);
                checkpoints
                    .shards
                    .insert(id.to_owned(), ShardCheckpoint::Finished);
                shard.iterator = None;
            }
        }
        Ok(!output.records().is_empty())
    }

    fn set_aside(&self, poison: &[PoisonRecord]) -> Result<(), AwsError> {
        let path = self.data_dir.join(POISON_FILE);
        let mut text = String::new();
        for record in poison {
            tracing::warn!(
                message = "poison record set aside",
                shard_id = %record.shard_id,
                sequence_number = %record.sequence_number,
                error = %record.error
            );
            text.push_str(&record.to_json());
            text.push('\n');
        }
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()
        };
        write().map_err(|error| AwsError::Config(format!("{}: {error}", path.display())))
    }
}

/// Whether a shard may be read: every parent the stream still lists has been read to its end
/// (a parent past the stream's retention is no longer listed, and is not waited for).
pub fn parents_done(parents: &[String], listed: &HashSet<&str>, checkpoints: &Checkpoints) -> bool {
    parents.iter().all(|parent| {
        !listed.contains(parent.as_str())
            || matches!(
                checkpoints.shards.get(parent),
                Some(ShardCheckpoint::Finished)
            )
    })
}

enum ShardError {
    Retry(AwsError),
    Fatal(AwsError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_wait_for_every_listed_parent_to_be_read_to_its_end() {
        let mut checkpoints = Checkpoints {
            stream: "s".into(),
            shards: BTreeMap::new(),
        };
        let parents = vec!["shard-0".to_owned(), "shard-1".to_owned()];
        let listed: HashSet<&str> = ["shard-0", "shard-1", "shard-2"].into();
        assert!(!parents_done(&parents, &listed, &checkpoints));
        checkpoints.shards.insert(
            "shard-0".into(),
            ShardCheckpoint::At {
                sequence_number: "9".into(),
            },
        );
        assert!(!parents_done(&parents, &listed, &checkpoints));
        checkpoints
            .shards
            .insert("shard-0".into(), ShardCheckpoint::Finished);
        assert!(
            !parents_done(&parents, &listed, &checkpoints),
            "a merge waits for both"
        );
        checkpoints
            .shards
            .insert("shard-1".into(), ShardCheckpoint::Finished);
        assert!(parents_done(&parents, &listed, &checkpoints));
        // A parent past retention is not listed any more.
        let listed: HashSet<&str> = ["shard-2"].into();
        assert!(parents_done(&parents, &listed, &Checkpoints::default()));
        assert!(parents_done(&[], &listed, &Checkpoints::default()));
    }

    #[test]
    fn checkpoints_survive_a_round_trip_and_refuse_another_stream() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join(CHECKPOINT_FILE);
        let mut checkpoints = Checkpoints::load(&path, "events").unwrap();
        assert!(checkpoints.shards.is_empty());
        checkpoints.shards.insert(
            "shardId-000000000000".into(),
            ShardCheckpoint::At {
                sequence_number: "4959".into(),
            },
        );
        checkpoints
            .shards
            .insert("shardId-000000000001".into(), ShardCheckpoint::Finished);
        checkpoints.save(&path).unwrap();
        assert_eq!(Checkpoints::load(&path, "events").unwrap(), checkpoints);
        let error = Checkpoints::load(&path, "other").unwrap_err().to_string();
        assert!(
            error.contains("holds the checkpoints of stream \"events\""),
            "{error}"
        );
    }
}
