//! Events as a server builds them: each names its own user, since a server tracks many.
//!
//! An [`Event`] is cheap to build on the application's thread: a `&'static str` name and
//! property keys are not copied, and properties set one by one are kept in a small list. The
//! background task turns it into an [`Envelope`] (so the memory for the envelope's maps is
//! allocated and freed on one thread, which matters to glibc's allocator).

use std::borrow::Cow;

use serde_json::{Map, Value};
use smallvec::SmallVec;
use time::OffsetDateTime;
use tributary_core::Envelope;
use tributary_core::envelope::reserved::{ALIAS, GROUP, IDENTIFY};
use tributary_core::envelope::validation::{self, check_name};
use tributary_core::envelope::{
    MAX_ANONYMOUS_ID_CHARS, MAX_ID_CHARS, MAX_USER_ID_CHARS, Problem, ValidationError,
};

/// One event to send; build it with [`Event::new`] or a reserved-event constructor.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    name: Cow<'static, str>,
    data: Map<String, Value>,
    /// Set with [`Event::property`]; merged into `data` (later values win) in the background.
    /// The first two live inline: most server events set a couple of properties, and an
    /// allocation here would be freed on another thread.
    properties: SmallVec<[(Cow<'static, str>, Value); 2]>,
    user_id: Option<String>,
    anonymous_id: Option<String>,
    id: Option<String>,
    timestamp: Option<OffsetDateTime>,
    context: Map<String, Value>,
    /// The field whose value was not a JSON object, reported by `track`.
    not_an_object: Option<&'static str>,
    /// Kinesis mode's partition key, when not the envelope's.
    partition_key: Option<String>,
}

impl Event {
    /// An event called `name` with empty data.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Self {
            name: name.into(),
            data: Map::new(),
            properties: SmallVec::new(),
            user_id: None,
            anonymous_id: None,
            id: None,
            timestamp: None,
            context: Map::new(),
            not_an_object: None,
            partition_key: None,
        }
    }

    /// An `$identify` event: `user_id` has these traits (also sent as `context.traits`).
    pub fn identify(user_id: impl Into<String>, traits: Value) -> Self {
        let mut event = Self::new(IDENTIFY).user_id(user_id);
        match traits {
            Value::Object(traits) => {
                event
                    .context
                    .insert("traits".into(), Value::Object(traits.clone()));
                event.data = traits;
            }
            Value::Null => {}
            _ => event.not_an_object = Some("traits"),
        }
        event
    }

    /// A `$group` event: `user_id` belongs to `group_id`, described by `traits`.
    pub fn group(user_id: impl Into<String>, group_id: impl Into<String>, traits: Value) -> Self {
        let mut event = Self::new(GROUP).user_id(user_id);
        let traits = match traits {
            Value::Object(traits) => traits,
            Value::Null => Map::new(),
            _ => {
                event.not_an_object = Some("traits");
                Map::new()
            }
        };
        event
            .data
            .insert("group_id".into(), Value::String(group_id.into()));
        event.data.insert("traits".into(), Value::Object(traits));
        event
    }

    /// An `$alias` event: `previous_id` is now known as `user_id`.
    pub fn alias(user_id: impl Into<String>, previous_id: impl Into<String>) -> Self {
        let mut event = Self::new(ALIAS).user_id(user_id);
        event
            .data
            .insert("previous_id".into(), Value::String(previous_id.into()));
        event
    }

    /// Wraps a complete envelope (its `id`, `timestamp` and every other field are kept).
    pub fn from_envelope(envelope: Envelope) -> Self {
        Self {
            name: Cow::Owned(envelope.name),
            data: envelope.data,
            properties: SmallVec::new(),
            user_id: envelope.user_id,
            anonymous_id: envelope.anonymous_id,
            id: envelope.id,
            timestamp: envelope.timestamp,
            context: envelope.context,
            not_an_object: None,
            partition_key: None,
        }
    }

    /// The event's properties; must be a JSON object (replaces earlier ones).
    pub fn data(mut self, data: Value) -> Self {
        self.properties.clear();
        match data {
            Value::Object(map) => self.data = map,
            Value::Null => self.data = Map::new(),
            _ => self.not_an_object = Some("data"),
        }
        self
    }

    /// Sets one property.
    pub fn property(mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Value>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// The user this event is about.
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// The device or session this event is about, when the user is not known.
    pub fn anonymous_id(mut self, anonymous_id: impl Into<String>) -> Self {
        self.anonymous_id = Some(anonymous_id.into());
        self
    }

    /// When it happened (default: when `track` is called).
    pub fn timestamp(mut self, timestamp: OffsetDateTime) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// The event's id (default: a new UUIDv7); set it to make retries of your own idempotent.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Kinesis mode only: the partition key to put the event under, instead of its
    /// `anonymous_id`, else `user_id`, else `id`. HTTP mode ignores it (the ingest keys events
    /// by the envelope).
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// Sets one `context` entry (`ip`, `page`, `campaign`, …).
    pub fn context(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.context.insert(key.into(), value.into());
        self
    }

    /// Sets the time of the event when it has none.
    pub(crate) fn stamp(&mut self, now: OffsetDateTime) {
        self.timestamp.get_or_insert(now);
    }

    /// Checks what can be checked without building or serializing the envelope; the rest
    /// (reserved events' fields, the 32 KiB size) is checked by the queue.
    pub(crate) fn check(&self) -> Result<(), ValidationError> {
        if let Some(field) = self.not_an_object {
            return Err(ValidationError::new(field, Problem::NotAnObject));
        }
        check_name(&self.name)?;
        let fields = [
            ("id", &self.id, MAX_ID_CHARS),
            ("user_id", &self.user_id, MAX_USER_ID_CHARS),
            ("anonymous_id", &self.anonymous_id, MAX_ANONYMOUS_ID_CHARS),
        ];
        for (field, value, max) in fields {
            if let Some(value) = value {
                validation::check_text(field, value, max)?;
            }
        }
        Ok(())
    }

    /// The envelope (built on the background task).
    pub(crate) fn into_envelope(self) -> Envelope {
        self.into_parts().into_envelope()
    }

    /// Its fields, the properties merged into `data` (later values win).
    pub(crate) fn into_parts(self) -> EventParts {
        let mut data = self.data;
        for (key, value) in self.properties {
            data.insert(key.into_owned(), value);
        }
        EventParts {
            name: self.name,
            data,
            user_id: self.user_id,
            anonymous_id: self.anonymous_id,
            id: self.id,
            timestamp: self.timestamp,
            context: self.context,
            partition_key: self.partition_key,
        }
    }
}

/// An [`Event`]'s fields, for Kinesis mode, which writes the envelope's JSON from them without
/// building the envelope.
#[derive(Debug)]
#[cfg_attr(not(feature = "kinesis"), allow(dead_code))]
pub(crate) struct EventParts {
    pub(crate) name: Cow<'static, str>,
    pub(crate) data: Map<String, Value>,
    pub(crate) user_id: Option<String>,
    pub(crate) anonymous_id: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) timestamp: Option<OffsetDateTime>,
    pub(crate) context: Map<String, Value>,
    pub(crate) partition_key: Option<String>,
}

impl EventParts {
    /// The envelope (its `source` is left unset).
    pub(crate) fn into_envelope(self) -> Envelope {
        let mut envelope = Envelope::new(self.name.into_owned(), self.data);
        envelope.user_id = self.user_id;
        envelope.anonymous_id = self.anonymous_id;
        envelope.id = self.id;
        envelope.timestamp = self.timestamp;
        envelope.context = self.context;
        envelope
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
            .data(json!({"plan": "pro", "seats": 1}))
            .property("seats", 3)
            .context("ip", "10.0.0.1")
            .id("my-id");
        event.check().unwrap();
        let envelope = event.into_envelope();
        envelope.validate().unwrap();
        assert_eq!(envelope.name, "login");
        assert_eq!(
            envelope.data,
            *json!({"plan": "pro", "seats": 3}).as_object().unwrap(),
            "later values win"
        );
        assert_eq!(envelope.context["ip"], "10.0.0.1");
        assert_eq!(envelope.id.as_deref(), Some("my-id"));
        assert_eq!(envelope.partition_key(), "a1");
    }

    #[test]
    fn reserved_events_match_the_core() {
        let identify = Event::identify("u", json!({"a": 1})).into_envelope();
        let mut expected = Envelope::identify("u", json!({"a": 1}).as_object().cloned().unwrap());
        expected.context.insert("traits".into(), json!({"a": 1}));
        assert_eq!(identify, expected);
        let group = Event::group("u", "acme", json!({"tier": 2})).into_envelope();
        let mut expected =
            Envelope::group("acme", json!({"tier": 2}).as_object().cloned().unwrap());
        expected.user_id = Some("u".into());
        assert_eq!(group, expected);
        assert_eq!(
            Event::alias("u", "anon").into_envelope(),
            Envelope::alias("u", "anon")
        );
        for event in [
            Event::identify("u", json!({})),
            Event::group("u", "g", json!(null)),
            Event::alias("u", "a"),
        ] {
            event.check().unwrap();
            event.into_envelope().validate().unwrap();
        }
    }

    #[test]
    fn an_envelope_round_trips() {
        let mut envelope = Envelope::new("x", json!({"k": "v"}).as_object().cloned().unwrap());
        envelope.user_id = Some("u".into());
        envelope.context.insert("ip".into(), json!("1.2.3.4"));
        assert_eq!(
            Event::from_envelope(envelope.clone()).into_envelope(),
            envelope
        );
    }

    #[test]
    fn reports_what_is_wrong_at_once() {
        let error = Event::new("x").data(json!([1])).check().unwrap_err();
        assert_eq!(error.to_string(), "data: must be a JSON object");
        let error = Event::identify("u", json!("vip")).check().unwrap_err();
        assert_eq!(error.to_string(), "traits: must be a JSON object");
        let error = Event::new("").check().unwrap_err();
        assert_eq!(error.to_string(), "name: must not be empty");
        let error = Event::new("x")
            .user_id("u".repeat(257))
            .check()
            .unwrap_err();
        assert_eq!(error.field, "user_id");
        let owned_name = String::from("built at run time");
        Event::new(owned_name).check().unwrap();
    }
}
