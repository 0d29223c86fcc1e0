//! Kinesis records → the envelopes they carry, or poison.
//!
//! A Kinesis record holds one envelope's JSON, or a KPL aggregate of envelope JSONs
//! (de-aggregated with `tributary_core::kpl`). Every event keeps the sequence number of the
//! Kinesis record that carried it (the unit Lambda's partial batch responses speak of).
//! An envelope without `received_at` (produced straight to the stream, not through the ingest)
//! gets the record's `approximateArrivalTimestamp`, and the rest of the ingest's normalization
//! (an id when absent, derived from the sequence number so a redelivery keeps it).
//!
//! Poison: an aggregate whose checksum or protobuf is broken (the whole record), or a user
//! record that is not a valid envelope (that user record alone; its neighbours are delivered).

use std::borrow::Cow;
use std::hash::{Hash, Hasher};

use aws_lambda_events::event::kinesis::KinesisEventRecord;
use base64::Engine;
use serde::Serialize;
use tributary_core::envelope::MAX_EVENT_BYTES;
use tributary_core::{Envelope, Timestamp, kpl};

use crate::connectors::OutgoingEvent;
use crate::ingest::events::normalize;

/// An event read from the stream, with the sequence number of its Kinesis record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEvent {
    /// The Kinesis record's sequence number.
    pub sequence_number: String,
    /// The event.
    pub event: OutgoingEvent,
}

/// A record (or one user record of an aggregate) that is not an event; it goes to the router's
/// DLQ with its payload, as the message body below.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoisonRecord {
    /// Always 1.
    pub v: u32,
    /// Always `poison_record` (the router's DLQ also holds DLQ messages).
    pub kind: &'static str,
    /// The shard, from the record's `eventID` (`shardId-…:sequence`).
    pub shard_id: String,
    /// The Kinesis record's sequence number.
    pub sequence_number: String,
    /// The user record's index in its aggregate, when it came from one.
    pub sub_sequence_number: Option<u64>,
    /// The (user) record's partition key.
    pub partition_key: String,
    /// When Kinesis received the record, RFC 3339.
    pub approximate_arrival_timestamp: String,
    /// The (user) record's bytes, base64.
    pub payload_base64: String,
    /// Why it cannot be read.
    pub error: String,
}

impl PoisonRecord {
    /// The DLQ message body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What one Kinesis record gave.
#[derive(Debug, Default)]
pub struct ReadRecord {
    /// Its events, in order.
    pub events: Vec<StreamEvent>,
    /// What could not be read.
    pub poison: Vec<PoisonRecord>,
}

/// Reads one record of a Lambda Kinesis event.
pub fn read(record: &KinesisEventRecord) -> ReadRecord {
    let kinesis = &record.kinesis;
    let arrival_millis = kinesis.approximate_arrival_timestamp.0.timestamp_millis();
    let arrival = Timestamp::from_unix_millis(u64::try_from(arrival_millis).unwrap_or(0));
    let shard_id = record
        .event_id
        .as_deref()
        .and_then(|id| id.split_once(':'))
        .map(|(shard, _)| shard.to_owned())
        .unwrap_or_default();
    read_data(
        &shard_id,
        &kinesis.sequence_number,
        &kinesis.partition_key,
        &kinesis.data.0,
        arrival,
    )
}

/// Reads a record's data (the part shared with `tributary serve --source kinesis:`).
pub fn read_data(
    shard_id: &str,
    sequence_number: &str,
    partition_key: &str,
    data: &[u8],
    arrival: Timestamp,
) -> ReadRecord {
    let mut read = ReadRecord::default();
    let poison = |sub: Option<u64>, key: &str, payload: &[u8], error: String| PoisonRecord {
        v: 1,
        kind: "poison_record",
        shard_id: shard_id.to_owned(),
        sequence_number: sequence_number.to_owned(),
        sub_sequence_number: sub,
        partition_key: key.to_owned(),
        approximate_arrival_timestamp: arrival.to_rfc3339(),
        payload_base64: base64::engine::general_purpose::STANDARD.encode(payload),
        error,
    };
    let user_records = match kpl::deaggregate(partition_key, None, data) {
        Ok(records) => records,
        Err(error) => {
            read.poison.push(poison(
                None,
                partition_key,
                data,
                format!("KPL aggregate: {error}"),
            ));
            return read;
        }
    };
    for user_record in user_records {
        let sub = user_record.sub_sequence_number;
        match envelope(user_record.data, sequence_number, sub, arrival) {
            Ok(event) => read.events.push(StreamEvent {
                sequence_number: sequence_number.to_owned(),
                event,
            }),
            Err(error) => read.poison.push(poison(
                sub,
                user_record.partition_key,
                user_record.data,
                error,
            )),
        }
    }
    read
}

/// Checks one user record as an envelope, filling in what a direct producer leaves out.
fn envelope(
    data: &[u8],
    sequence_number: &str,
    sub_sequence_number: Option<u64>,
    arrival: Timestamp,
) -> Result<OutgoingEvent, String> {
    let text = std::str::from_utf8(data).map_err(|error| format!("not UTF-8 text: {error}"))?;
    if text.len() > MAX_EVENT_BYTES {
        return Err(format!(
            "event: is {} bytes of JSON, over the limit of {MAX_EVENT_BYTES} bytes",
            text.len()
        ));
    }
    let mut envelope = Envelope::from_json(text).map_err(|error| error.to_string())?;
    let json: Cow<'_, str> = if envelope.received_at.is_some() && envelope.id.is_some() {
        Cow::Borrowed(text)
    } else {
        // An id derived from where the record is, so that a redelivered batch keeps it.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (sequence_number, sub_sequence_number).hash(&mut hasher);
        let mut rng = fastrand::Rng::with_seed(hasher.finish());
        let received_at = envelope
            .received_at
            .and_then(Timestamp::from_datetime)
            .unwrap_or(arrival);
        normalize(&mut envelope, None, received_at, &mut rng);
        Cow::Owned(serde_json::to_string(&envelope).map_err(|error| format!("event: {error}"))?)
    };
    Ok(OutgoingEvent {
        id: envelope.id.clone().unwrap_or_default(),
        partition_key: envelope.partition_key().to_owned(),
        name: envelope.name,
        json: json.into(),
    })
}
