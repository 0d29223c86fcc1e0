//! Kinesis records → the envelopes they carry, or poison.
//!
//! A Kinesis record holds one envelope's JSON, or a KPL aggregate of envelope JSONs
//! (de-aggregated with `tributary_core::kpl`), either of them possibly gzip-compressed (the
//! ingest function compresses its records; `tributary_server::kinesis::decompress_record`
//! inflates a record that starts with `1F 8B`, bounded to 1 MiB). Every event keeps the sequence number of the
//! Kinesis record that carried it (the unit Lambda's partial batch responses speak of).
//! An envelope without `received_at` (produced straight to the stream, not through the ingest)
//! gets the record's `approximateArrivalTimestamp`, and the rest of the ingest's normalization
//! (an id when absent, derived from the sequence number so a redelivery keeps it).
//!
//! `approximateArrivalTimestamp` is read to the millisecond by [`kinesis_event`]: the Lambda
//! events crate reads the digits after the point as milliseconds whatever their number (`40.5`
//! became `40.005`), which put `received_at` up to 0.99 s early and could move an event across a
//! suppression's `since` or a deletion's `received_before`.
//!
//! Poison: a gzip record that does not inflate, an aggregate whose checksum or protobuf is
//! broken (the whole record, with its bytes as stored), or a user
//! record that is not a valid envelope (that user record alone; its neighbours are delivered).

use std::borrow::Cow;

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tributary_core::envelope::MAX_EVENT_BYTES;
use tributary_core::{Envelope, Timestamp, kpl};
use tributary_server::kinesis::decompress_record;

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

/// A Lambda Kinesis event from its JSON, each record's `approximateArrivalTimestamp` (seconds,
/// with up to three decimals) read exactly to the millisecond.
///
/// # Errors
/// When the JSON is not a Kinesis event.
pub fn kinesis_event(mut payload: serde_json::Value) -> Result<KinesisEvent, serde_json::Error> {
    let mut arrivals: Vec<Option<i64>> = Vec::new();
    if let Some(records) = payload
        .get_mut("Records")
        .and_then(serde_json::Value::as_array_mut)
    {
        for record in records {
            let slot = record
                .get_mut("kinesis")
                .and_then(|kinesis| kinesis.get_mut("approximateArrivalTimestamp"));
            let millis = slot.as_deref().and_then(arrival_millis);
            if let (Some(slot), Some(millis)) = (slot, millis) {
                // Whole seconds for the crate's reader (more than three decimals fail it
                // outright); the milliseconds are set below.
                *slot = serde_json::Value::from(millis.div_euclid(1000));
            }
            arrivals.push(millis);
        }
    }
    let mut event: KinesisEvent = serde_json::from_value(payload)?;
    for (record, millis) in event.records.iter_mut().zip(arrivals) {
        if let Some(at) = millis.and_then(chrono::DateTime::from_timestamp_millis) {
            record.kinesis.approximate_arrival_timestamp.0 = at;
        }
    }
    Ok(event)
}

/// Unix milliseconds from seconds written as a JSON number or string (`1795000000.5`), from the
/// decimal text, so no float rounding is involved.
fn arrival_millis(value: &serde_json::Value) -> Option<i64> {
    let text = match value {
        serde_json::Value::Number(number) => number.to_string(),
        serde_json::Value::String(text) => text.trim().to_owned(),
        _ => return None,
    };
    let (seconds, fraction) = text.split_once('.').unwrap_or((&text, ""));
    if seconds.starts_with('-') {
        return None;
    }
    let seconds: i64 = seconds.parse().ok()?;
    if !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let millis: i64 = format!("{fraction:0<3}")[..3].parse().ok()?;
    seconds.checked_mul(1000)?.checked_add(millis)
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
    let inflated = match decompress_record(data) {
        Ok(inflated) => inflated,
        Err(error) => {
            read.poison
                .push(poison(None, partition_key, data, error.to_string()));
            return read;
        }
    };
    let user_records = match kpl::deaggregate(partition_key, None, &inflated) {
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
        // An id derived from where the record is (SHA-256, stable across builds), so that a
        // redelivered batch keeps it.
        let digest = Sha256::new()
            .chain_update(sequence_number.as_bytes())
            .chain_update(sub_sequence_number.unwrap_or(u64::MAX).to_be_bytes())
            .finalize();
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&digest[..8]);
        let mut rng = fastrand::Rng::with_seed(u64::from_be_bytes(seed));
        let received_at = envelope
            .received_at
            .and_then(Timestamp::from_datetime)
            .unwrap_or(arrival);
        normalize(&mut envelope, None, received_at, &mut rng)
            .map_err(|error| format!("event: {error}"))?;
        Cow::Owned(serde_json::to_string(&envelope).map_err(|error| format!("event: {error}"))?)
    };
    Ok(OutgoingEvent {
        id: envelope.id.clone().unwrap_or_default(),
        partition_key: envelope.partition_key().to_owned(),
        name: envelope.name,
        json: json.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARRIVAL: Timestamp = Timestamp::from_unix_millis(1_795_000_000_123);

    #[test]
    fn a_direct_envelope_gets_received_at_and_a_stable_id() {
        let data = br#"{"name": "login", "data": {}, "anonymous_id": "anon-1"}"#;
        let first = read_data("shardId-000000000000", "4959", "anon-1", data, ARRIVAL);
        let again = read_data("shardId-000000000000", "4959", "anon-1", data, ARRIVAL);
        assert!(first.poison.is_empty());
        let event = &first.events[0].event;
        assert_eq!(event, &again.events[0].event, "a redelivery keeps the id");
        let envelope: serde_json::Value = serde_json::from_str(&event.json).unwrap();
        assert_eq!(envelope["received_at"], "2026-11-18T11:06:40.123Z");
        assert_eq!(envelope["id"], event.id.as_str());
        assert_eq!(event.partition_key, "anon-1");
        let elsewhere = read_data("shardId-000000000000", "4960", "anon-1", data, ARRIVAL);
        assert_ne!(elsewhere.events[0].event.id, event.id);
    }

    #[test]
    fn arrival_timestamps_are_read_to_the_millisecond() {
        let event = |at: serde_json::Value| {
            serde_json::json!({"Records": [{
                "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "k",
                            "sequenceNumber": "1", "data": "e30=", "approximateArrivalTimestamp": at},
                "eventSource": "aws:kinesis", "eventID": "shardId-000000000000:1"
            }]})
        };
        let millis = |at: serde_json::Value| {
            kinesis_event(event(at)).unwrap().records[0]
                .kinesis
                .approximate_arrival_timestamp
                .0
                .timestamp_millis()
        };
        let raw: serde_json::Value = serde_json::from_str("1795000000.5").unwrap();
        assert_eq!(millis(raw), 1_795_000_000_500, "not 1_795_000_000_005");
        assert_eq!(
            millis(serde_json::json!(1_795_000_000.123)),
            1_795_000_000_123
        );
        assert_eq!(millis(serde_json::json!(1_795_000_000)), 1_795_000_000_000);
        assert_eq!(
            millis(serde_json::json!("1795000000.07")),
            1_795_000_000_070
        );
        assert_eq!(
            millis(serde_json::json!(1_795_000_000.123_456)),
            1_795_000_000_123
        );
    }

    #[test]
    fn an_envelope_from_the_ingest_is_kept_byte_for_byte() {
        let data =
            br#"{"id":"e-1","name":"login","data":{},"received_at":"2026-11-27T10:00:00.000Z"}"#;
        let read = read_data("s", "1", "k", data, ARRIVAL);
        assert_eq!(read.events[0].event.json.as_bytes(), &data[..]);
    }

    #[test]
    fn a_bad_user_record_costs_only_itself() {
        let mut builder = kpl::AggregateBuilder::new(kpl::DEFAULT_MAX_AGGREGATE_BYTES);
        builder.add("a", None, br#"{"id":"1","name":"ok","data":{}}"#);
        builder.add("b", None, br#"{"id":"2","name":"","data":{}}"#);
        builder.add("c", None, br#"{"id":"3","name":"ok","data":{}}"#);
        let aggregate = builder.finish();
        let read = read_data("s", "7", "a", &aggregate, ARRIVAL);
        assert_eq!(read.events.len(), 2);
        assert!(read.events.iter().all(|event| event.sequence_number == "7"));
        assert_eq!(read.poison.len(), 1);
        assert_eq!(read.poison[0].sub_sequence_number, Some(1));
        assert_eq!(read.poison[0].partition_key, "b");

        let mut broken = aggregate.clone();
        let last = broken.len() - 1;
        broken[last] ^= 0xff;
        let read = read_data("s", "8", "a", &broken, ARRIVAL);
        assert!(read.events.is_empty());
        assert_eq!(read.poison.len(), 1);
        assert!(
            read.poison[0].error.contains("MD5"),
            "{}",
            read.poison[0].error
        );
    }

    #[test]
    fn gzip_records_are_inflated_and_broken_ones_are_poison() {
        use std::io::Write;
        let mut builder = kpl::AggregateBuilder::new(kpl::DEFAULT_MAX_AGGREGATE_BYTES);
        builder.add("a", None, br#"{"id":"1","name":"ok","data":{}}"#);
        builder.add("b", None, br#"{"id":"2","name":"ok","data":{}}"#);
        let gzip = |data: &[u8]| {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).unwrap();
            encoder.finish().unwrap()
        };
        let compressed = gzip(&builder.finish());
        let read = read_data("s", "9", "a", &compressed, ARRIVAL);
        assert!(read.poison.is_empty(), "{:?}", read.poison);
        assert_eq!(read.events.len(), 2);
        let single = gzip(br#"{"id":"3","name":"ok","data":{}}"#);
        assert_eq!(read_data("s", "10", "c", &single, ARRIVAL).events.len(), 1);

        let truncated = &compressed[..compressed.len() - 4];
        let read = read_data("s", "11", "a", truncated, ARRIVAL);
        assert!(read.events.is_empty());
        assert_eq!(read.poison.len(), 1);
        assert!(
            read.poison[0].error.contains("gzip"),
            "{}",
            read.poison[0].error
        );
        assert_eq!(
            read.poison[0].payload_base64,
            base64::engine::general_purpose::STANDARD.encode(truncated),
            "the record as stored"
        );
    }
}
