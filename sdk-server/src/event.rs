//! Events as a server builds them: each names its own user, since a server tracks many.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use tributary_core::Envelope;
use tributary_core::envelope::{Problem, ValidationError};

/// One event to send; build it with [`Event::new`] or a reserved-event constructor.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub(crate) envelope: Envelope,
    /// `data` that was not a JSON object, reported by `track`.
    pub(crate) data_not_an_object: bool,
}

impl Event {
    /// An event called `name` with empty data.
    pub fn new(name: impl Into<String>) -> Self {
        Self::from_envelope(Envelope::new(name, Map::new()))
    }

    /// An `$identify` event: `user_id` has these traits.
    pub fn identify(user_id: impl Into<String>, traits: Value) -> Self {
        let (traits, not_object) = into_object(traits);
        let mut event = Self::from_envelope(Envelope::identify(user_id, traits.clone()));
        event
            .envelope
            .context
            .insert("traits".into(), Value::Object(traits));
        event.data_not_an_object = not_object;
        event
    }

    /// A `$group` event: `user_id` belongs to `group_id`, described by `traits`.
    pub fn group(user_id: impl Into<String>, group_id: impl Into<String>, traits: Value) -> Self {
        let (traits, not_object) = into_object(traits);
        let mut event = Self::from_envelope(Envelope::group(group_id, traits));
        event.envelope.user_id = Some(user_id.into());
        event.data_not_an_object = not_object;
        event
    }

    /// An `$alias` event: `previous_id` is now known as `user_id`.
    pub fn alias(user_id: impl Into<String>, previous_id: impl Into<String>) -> Self {
        Self::from_envelope(Envelope::alias(user_id, previous_id))
    }

    /// Wraps a complete envelope (its `id` and `timestamp` are kept when set).
    pub fn from_envelope(envelope: Envelope) -> Self {
        Self {
            envelope,
            data_not_an_object: false,
        }
    }

    /// The event's properties; must be a JSON object.
    pub fn data(mut self, data: Value) -> Self {
        let (data, not_object) = into_object(data);
        self.envelope.data = data;
        self.data_not_an_object = not_object;
        self
    }

    /// Sets one property.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.envelope.data.insert(key.into(), value.into());
        self
    }

    /// The user this event is about.
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.envelope.user_id = Some(user_id.into());
        self
    }

    /// The device or session this event is about, when the user is not known.
    pub fn anonymous_id(mut self, anonymous_id: impl Into<String>) -> Self {
        self.envelope.anonymous_id = Some(anonymous_id.into());
        self
    }

    /// When it happened (default: when `track` is called).
    pub fn timestamp(mut self, timestamp: OffsetDateTime) -> Self {
        self.envelope.timestamp = Some(timestamp);
        self
    }

    /// The event's id (default: a new UUIDv7); set it to make retries of your own idempotent.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.envelope.id = Some(id.into());
        self
    }

    /// Sets one `context` entry (`ip`, `page`, `campaign`, …).
    pub fn context(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.envelope.context.insert(key.into(), value.into());
        self
    }

    /// Checks what can be checked without serializing (the size is checked by the queue).
    pub(crate) fn check(&self) -> Result<(), ValidationError> {
        if self.data_not_an_object {
            let field = if self.envelope.name == tributary_core::envelope::reserved::IDENTIFY {
                "traits"
            } else {
                "data"
            };
            return Err(ValidationError::new(field, Problem::NotAnObject));
        }
        self.envelope.validate()
    }
}

fn into_object(value: Value) -> (Map<String, Value>, bool) {
    match value {
        Value::Object(map) => (map, false),
        Value::Null => (Map::new(), false),
        _ => (Map::new(), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builds_envelopes() {
        let event = Event::new("login")
            .user_id("u1")
            .anonymous_id("a1")
            .data(json!({"plan": "pro"}))
            .property("seats", 3)
            .context("ip", "10.0.0.1")
            .id("my-id");
        event.check().unwrap();
        let envelope = &event.envelope;
        assert_eq!(
            envelope.data,
            *json!({"plan": "pro", "seats": 3}).as_object().unwrap()
        );
        assert_eq!(envelope.context["ip"], "10.0.0.1");
        assert_eq!(envelope.id.as_deref(), Some("my-id"));
        assert_eq!(envelope.partition_key(), "a1");
    }

    #[test]
    fn reports_what_is_wrong_at_once() {
        let error = Event::new("x").data(json!([1])).check().unwrap_err();
        assert_eq!(error.to_string(), "data: must be a JSON object");
        let error = Event::identify("u", json!("vip")).check().unwrap_err();
        assert_eq!(error.to_string(), "traits: must be a JSON object");
        let error = Event::new("").check().unwrap_err();
        assert_eq!(error.to_string(), "name: must not be empty");
        Event::identify("u", json!({"a": 1})).check().unwrap();
        Event::group("u", "acme", json!({})).check().unwrap();
        Event::alias("u", "anon").check().unwrap();
    }
}
