//! Writes an event's envelope JSON straight from the [`Event`]'s fields, on the application's
//! thread, without building sdk-core's `Envelope`: no envelope maps, no `library` value cloned
//! into each event's context, no RFC 3339 text through a `String`.
//!
//! # Invariants
//! - The bytes are exactly what `serde_json::to_writer` makes of the `Envelope` that
//!   `Event::into_envelope` builds with `source` "server" and the producer's `library` in the
//!   context when absent: the same fields in the same order (`id`, `name`, `data`,
//!   `timestamp`, `anonymous_id`, `user_id`, `source`, `context`; absent ones skipped), strings
//!   and values escaped by serde_json itself, the timestamp formatted by `time`'s RFC 3339, and
//!   the context's keys in the order serde_json's `Map` keeps them (sorted, or insertion order
//!   with its `preserve_order` feature, detected at run time). The test below compares the two
//!   for many events.
//! - Only events with a plain name are written here: reserved (`$`) events have rules on their
//!   data, and go through the `Envelope` and its validation.
//!
//! [`Event`]: crate::Event

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tributary_core::envelope::{Problem, ValidationError};

use crate::event::EventParts;

/// The producer's fixed parts of every envelope.
#[derive(Debug)]
pub(crate) struct EnvelopeJson {
    /// The JSON of the `library` context entry's value.
    library: Vec<u8>,
    /// Whether serde_json's `Map` iterates its keys sorted (else in insertion order).
    sorted_maps: bool,
}

impl EnvelopeJson {
    pub(crate) fn new(library: &Value) -> Self {
        let mut probe = Map::new();
        probe.insert("b".into(), Value::Null);
        probe.insert("a".into(), Value::Null);
        Self {
            library: serde_json::to_vec(library).unwrap_or_else(|_| b"null".to_vec()),
            sorted_maps: probe.keys().next().is_some_and(|key| key == "a"),
        }
    }

    /// Appends the envelope's JSON to `out`, with `id` and `timestamp` (filled in by the
    /// caller when the event had none).
    ///
    /// # Errors
    /// A timestamp RFC 3339 cannot express (serde_json's message for it, as the `Envelope`'s
    /// serialization gives).
    pub(crate) fn write(
        &self,
        event: &EventParts,
        id: &str,
        timestamp: OffsetDateTime,
        out: &mut Vec<u8>,
    ) -> Result<(), ValidationError> {
        out.extend_from_slice(b"{\"id\":");
        string(out, id);
        out.extend_from_slice(b",\"name\":");
        string(out, &event.name);
        out.extend_from_slice(b",\"data\":");
        value(out, &event.data);
        out.extend_from_slice(b",\"timestamp\":\"");
        timestamp
            .format_into(&mut *out, &Rfc3339)
            .map_err(|error| {
                ValidationError::new("event", Problem::Malformed(error.to_string()))
            })?;
        out.push(b'"');
        if let Some(anonymous_id) = &event.anonymous_id {
            out.extend_from_slice(b",\"anonymous_id\":");
            string(out, anonymous_id);
        }
        if let Some(user_id) = &event.user_id {
            out.extend_from_slice(b",\"user_id\":");
            string(out, user_id);
        }
        out.extend_from_slice(b",\"source\":\"server\",\"context\":");
        self.context(out, &event.context);
        out.push(b'}');
        Ok(())
    }

    /// The context, with `library` added where the map would have put it.
    fn context(&self, out: &mut Vec<u8>, context: &Map<String, Value>) {
        if context.contains_key("library") {
            value(out, context);
            return;
        }
        out.push(b'{');
        let mut first = true;
        let mut library_written = false;
        for (key, entry) in context {
            if self.sorted_maps && !library_written && key.as_str() > "library" {
                self.library_entry(out, &mut first);
                library_written = true;
            }
            separator(out, &mut first);
            string(out, key);
            out.push(b':');
            let _ = serde_json::to_writer(&mut *out, entry);
        }
        if !library_written {
            self.library_entry(out, &mut first);
        }
        out.push(b'}');
    }

    fn library_entry(&self, out: &mut Vec<u8>, first: &mut bool) {
        separator(out, first);
        out.extend_from_slice(b"\"library\":");
        out.extend_from_slice(&self.library);
    }
}

fn separator(out: &mut Vec<u8>, first: &mut bool) {
    if !std::mem::take(first) {
        out.push(b',');
    }
}

// serde_json writes these: writing into a `Vec` cannot fail, nor can serializing a string or a
// map of JSON values.

/// A JSON string, escaped by serde_json.
fn string(out: &mut Vec<u8>, text: &str) {
    let _ = serde_json::to_writer(&mut *out, text);
}

/// A JSON object, by serde_json.
fn value(out: &mut Vec<u8>, map: &Map<String, Value>) {
    let _ = serde_json::to_writer(&mut *out, map);
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde_json::json;
    use time::{Duration, UtcOffset};

    use super::*;

    fn parts(index: usize) -> EventParts {
        let names = [
            "page_view",
            "Çà et là — ünïcode ✓",
            "quote \" back\\slash",
            "tab\tnot",
        ];
        let ids = [
            "0192f0c4-1b2a-7c3d-8e4f-000000000001",
            "id with \"quotes\"",
            "ü-id",
        ];
        let data = [
            json!({}),
            json!({"path": "/pricing", "ref": "newsletter"}),
            json!({"z": 1, "a": [1, 2.5, null, true], "m": {"nested": "\u{1F600}\n"}}),
            json!({"émoji": "😀", "ctrl": "\u{0007}", "big": 12345678901234567890u64}),
        ];
        let contexts = [
            json!({}),
            json!({"library": "b"}),
            json!({"ip": "10.0.0.1", "zeta": {"x": 1}}),
            json!({"app": 1, "library": {"name": "mine"}, "page": "/"}),
            json!({"a": 1}),
            json!({"zz": 1, "aa": 2}),
            json!({"library_version": 3, "lib": 2}),
        ];
        let timestamp =
            OffsetDateTime::UNIX_EPOCH + Duration::nanoseconds(index as i64 * 1_234_567_891);
        let timestamp = if index % 5 == 0 {
            timestamp.to_offset(UtcOffset::from_hms(5, 30, 0).unwrap())
        } else {
            timestamp
        };
        EventParts {
            name: Cow::Owned(names[index % names.len()].to_owned()),
            data: data[index % data.len()].as_object().cloned().unwrap(),
            user_id: (index % 3 != 0).then(|| format!("user-{index} \"ü\"")),
            anonymous_id: (index % 4 == 1).then(|| format!("anon-{index}")),
            id: Some(ids[index % ids.len()].to_owned()),
            timestamp: Some(timestamp),
            context: contexts[index % contexts.len()]
                .as_object()
                .cloned()
                .unwrap(),
            partition_key: None,
        }
    }

    /// What `send` serialized before: the `Envelope`, through serde_json.
    fn through_the_envelope(parts: EventParts, library: &Value) -> Vec<u8> {
        let mut envelope = parts.into_envelope();
        envelope.source = Some("server".into());
        if !envelope.context.contains_key("library") {
            envelope.context.insert("library".into(), library.clone());
        }
        serde_json::to_vec(&envelope).unwrap()
    }

    #[test]
    fn writes_the_bytes_the_envelope_serializes_to() {
        let library = json!({"name": "tributary-server", "version": "0.1.0"});
        let writer = EnvelopeJson::new(&library);
        for index in 0..500 {
            let event = parts(index);
            let mut written = Vec::new();
            writer
                .write(
                    &event,
                    event.id.as_deref().unwrap(),
                    event.timestamp.unwrap(),
                    &mut written,
                )
                .unwrap();
            let expected = through_the_envelope(event, &library);
            assert_eq!(
                String::from_utf8(written).unwrap(),
                String::from_utf8(expected).unwrap(),
                "event {index}"
            );
        }
    }

    #[test]
    fn a_timestamp_rfc_3339_cannot_express_is_the_same_error() {
        let library = json!("lib");
        let mut event = parts(1);
        let odd = OffsetDateTime::UNIX_EPOCH.to_offset(UtcOffset::from_hms(1, 0, 30).unwrap());
        event.timestamp = Some(odd);
        let error = EnvelopeJson::new(&library)
            .write(&event, "id", odd, &mut Vec::new())
            .unwrap_err();
        let mut envelope = event.into_envelope();
        envelope.source = Some("server".into());
        let expected = serde_json::to_vec(&envelope).unwrap_err().to_string();
        assert_eq!(
            error,
            ValidationError::new("event", Problem::Malformed(expected))
        );
    }
}
