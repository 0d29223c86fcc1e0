//! The [`Envelope`] type and its JSON form (UTF-8, field names in `snake_case`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::validation::{self, Problem, ValidationError};

/// One event, as every SDK sends it and every ingest stores it.
///
/// Unknown top-level fields are rejected (naming the field), so that a typo such as
/// `"propertes"` is caught at the first hop instead of silently losing data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Unique per event (UUIDv7 from the SDKs); the deduplication key end to end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What happened, 1–128 characters; names starting with `$` are reserved.
    pub name: String,
    /// The event's properties (for `$identify` the traits); may be empty.
    pub data: Map<String, Value>,
    /// When it happened (after the backend's clock-skew correction, when `sent_at` was given).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub timestamp: Option<OffsetDateTime>,
    /// The client's own `timestamp`, kept by the backend when it corrected clock skew.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub original_timestamp: Option<OffsetDateTime>,
    /// When the client sent the event (per event; a batch's `sent_at` is the default).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub sent_at: Option<OffsetDateTime>,
    /// When the backend received the event; never trusted from clients.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub received_at: Option<OffsetDateTime>,
    /// Generated once per install or browser and persisted; at most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    /// The known user, set by `identify`; at most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// `web`, `ios`, `android`, `server` or another producer name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Library, app, device, page, `traits` (the latest identify traits), `ip`, …
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub context: Map<String, Value>,
}

impl Envelope {
    /// A new event with this name and data and every other field empty.
    pub fn new(name: impl Into<String>, data: Map<String, Value>) -> Self {
        Self {
            id: None,
            name: name.into(),
            data,
            timestamp: None,
            original_timestamp: None,
            sent_at: None,
            received_at: None,
            anonymous_id: None,
            user_id: None,
            source: None,
            context: Map::new(),
        }
    }

    /// Reads one event from JSON text and validates it.
    ///
    /// # Errors
    /// A [`ValidationError`] naming the field at fault: malformed JSON, a wrong type, an unknown
    /// field, or any rule of [`Envelope::validate`].
    pub fn from_json(text: &str) -> Result<Self, ValidationError> {
        if !text.trim_start().starts_with('{') {
            return Err(ValidationError::new("event", Problem::NotAnObject));
        }
        let envelope: Envelope = match serde_json::from_str(text) {
            Ok(envelope) => envelope,
            // Parse again, slower, only to name the field at fault.
            Err(_) => {
                let deserializer = &mut serde_json::Deserializer::from_str(text);
                serde_path_to_error::deserialize(deserializer).map_err(from_serde_error)?
            }
        };
        envelope.validate()?;
        Ok(envelope)
    }

    /// Reads one event from a parsed JSON value and validates it.
    ///
    /// # Errors
    /// As [`Envelope::from_json`].
    pub fn from_value(value: Value) -> Result<Self, ValidationError> {
        if !value.is_object() {
            return Err(ValidationError::new("event", Problem::NotAnObject));
        }
        let envelope: Envelope =
            serde_path_to_error::deserialize(value).map_err(from_serde_error)?;
        envelope.validate()?;
        Ok(envelope)
    }

    /// Checks every rule that does not need the serialized form (see [`validation`]).
    ///
    /// # Errors
    /// The first rule broken, naming its field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validation::validate_envelope(self)
    }

    /// This event as compact JSON, checked against [`super::MAX_EVENT_BYTES`].
    ///
    /// # Errors
    /// [`Problem::TooLarge`] when the JSON is over the limit.
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, ValidationError> {
        let bytes = serde_json::to_vec(self).map_err(|error| {
            ValidationError::new("event", Problem::Malformed(error.to_string()))
        })?;
        validation::check_event_size(bytes.len())?;
        Ok(bytes)
    }

    /// The Kinesis partition key and ordering key: `anonymous_id`, else `user_id`, else `id`
    /// (empty only for an event that has none of the three yet).
    pub fn partition_key(&self) -> &str {
        self.anonymous_id
            .as_deref()
            .or(self.user_id.as_deref())
            .or(self.id.as_deref())
            .unwrap_or("")
    }
}

/// Turns a serde error into a [`ValidationError`] naming the JSON path that failed.
fn from_serde_error<E: std::fmt::Display>(error: serde_path_to_error::Error<E>) -> ValidationError {
    let path = error.path().to_string();
    let message = error.inner().to_string();
    let field = if path == "." {
        "event".to_owned()
    } else {
        path
    };
    if let Some(missing) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        return ValidationError::new(missing, Problem::Missing);
    }
    ValidationError::new(
        field,
        Problem::Malformed(validation::without_json_position(&message).to_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn round_trips_through_json() {
        let mut event = Envelope::new("login", object(json!({"square": 4})));
        event.id = Some("0192f0c4-1b2a-7c3d-8e4f-000000000000".into());
        event.timestamp = Some(time::macros::datetime!(2026-11-27 10:00:00.5 UTC));
        event.anonymous_id = Some("anon-7".into());
        event
            .context
            .insert("library".into(), json!({"name": "test"}));
        let bytes = event.to_json_bytes().unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(
            text.contains(r#""timestamp":"2026-11-27T10:00:00.5Z""#),
            "{text}"
        );
        assert!(
            !text.contains("user_id"),
            "absent fields are omitted: {text}"
        );
        assert_eq!(Envelope::from_json(text).unwrap(), event);
    }

    #[test]
    fn names_the_field_at_fault() {
        let error = Envelope::from_json(r#"{"name": 5, "data": {}}"#).unwrap_err();
        assert_eq!(error.field, "name");
        assert!(
            error
                .to_string()
                .starts_with("name: invalid type: integer `5`"),
            "{error}"
        );

        let error = Envelope::from_json(r#"{"name": "x"}"#).unwrap_err();
        assert_eq!(error.to_string(), "data: is required");

        let error = Envelope::from_json(r#"{"name": "x", "data": [1]}"#).unwrap_err();
        assert_eq!(error.field, "data");

        let error =
            Envelope::from_json(r#"{"name": "x", "data": {}, "propertes": {}}"#).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `propertes`"),
            "{error}"
        );

        let error = Envelope::from_json(r#"{"name": "x", "data": {}, "timestamp": "yesterday"}"#)
            .unwrap_err();
        assert_eq!(error.field, "timestamp");

        let error = Envelope::from_value(json!([1, 2])).unwrap_err();
        assert_eq!(error.to_string(), "event: must be a JSON object");
    }

    #[test]
    fn partition_key_prefers_the_device() {
        let mut event = Envelope::new("x", Map::new());
        assert_eq!(event.partition_key(), "");
        event.id = Some("id-1".into());
        assert_eq!(event.partition_key(), "id-1");
        event.user_id = Some("user-1".into());
        assert_eq!(event.partition_key(), "user-1");
        event.anonymous_id = Some("anon-1".into());
        assert_eq!(event.partition_key(), "anon-1");
    }
}
