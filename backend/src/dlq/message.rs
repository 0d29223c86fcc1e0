//! The DLQ message (the same body locally and in SQS) and its attributes.
//!
//! ```json
//! {"v": 1, "destination": "hooks", "events": [envelope, …],
//!  "error": {"class": "retryable", "status": 503, "message": "HTTP 503"},
//!  "attempts": 8, "first_failed_at": "2026-11-27T10:00:00.000Z", "last_failed_at": "…"}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::connectors::{Failure, OutgoingEvent};

/// The message format version.
pub const MESSAGE_VERSION: u32 = 1;

/// One failed batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterMessage {
    /// Always 1.
    pub v: u32,
    /// The destination that failed.
    pub destination: String,
    /// The envelopes, byte for byte as stored.
    pub events: Vec<Box<RawValue>>,
    /// The last failure.
    pub error: DeadLetterError,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// RFC 3339.
    pub first_failed_at: String,
    /// RFC 3339.
    pub last_failed_at: String,
}

/// Why the batch failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterError {
    /// `retryable` or `permanent`.
    pub class: String,
    /// The HTTP status, or `null`.
    pub status: Option<u16>,
    /// What happened.
    pub message: String,
}

impl From<&Failure> for DeadLetterError {
    fn from(failure: &Failure) -> Self {
        Self {
            class: failure.class.as_str().to_owned(),
            status: failure.status,
            message: failure.message.clone(),
        }
    }
}

/// A message attribute in SQS's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    /// `String` or `Number`.
    #[serde(rename = "DataType")]
    pub data_type: String,
    /// The value as text.
    #[serde(rename = "StringValue")]
    pub string_value: String,
}

impl DeadLetterMessage {
    /// A message for `events` that failed at `destination` after `attempts` attempts.
    pub fn new(
        destination: &str,
        events: &[OutgoingEvent],
        failure: &Failure,
        attempts: u32,
        first_failed_at: String,
        last_failed_at: String,
    ) -> Self {
        Self {
            v: MESSAGE_VERSION,
            destination: destination.to_owned(),
            events: events
                .iter()
                .filter_map(|event| RawValue::from_string(event.json.to_string()).ok())
                .collect(),
            error: DeadLetterError::from(failure),
            attempts,
            first_failed_at,
            last_failed_at,
        }
    }

    /// The message as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The attributes local DLQ messages carry: `destination`, `error_class`, `attempts`.
    pub fn attributes(&self) -> BTreeMap<String, Attribute> {
        let text = |value: &str| Attribute {
            data_type: "String".into(),
            string_value: value.to_owned(),
        };
        BTreeMap::from([
            ("destination".to_owned(), text(&self.destination)),
            ("error_class".to_owned(), text(&self.error.class)),
            (
                "attempts".to_owned(),
                Attribute {
                    data_type: "Number".into(),
                    string_value: self.attempts.to_string(),
                },
            ),
        ])
    }

    /// The events as connectors take them (ids, names and keys read from each envelope).
    pub fn outgoing_events(&self) -> Vec<OutgoingEvent> {
        self.events
            .iter()
            .map(|raw| outgoing_from_json(raw.get()))
            .collect()
    }
}

/// An [`OutgoingEvent`] from envelope JSON (fields that are missing read as empty).
pub fn outgoing_from_json(json: &str) -> OutgoingEvent {
    let envelope: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let text = |key: &str| {
        envelope
            .get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let id = text("id").unwrap_or_default();
    let partition_key = text("anonymous_id")
        .or_else(|| text("user_id"))
        .unwrap_or_else(|| id.clone());
    OutgoingEvent {
        name: text("name").unwrap_or_default(),
        partition_key,
        id,
        json: json.into(),
    }
}
