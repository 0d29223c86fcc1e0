//! Segment's HTTP Tracking API: Segment Spec messages mapped to Tributary envelopes, by the one
//! table in `docs/SEGMENT.md`.
//!
//! | Segment | envelope |
//! |---|---|
//! | `type: "track"`, `event`, `properties` | `name` = `event`, `data` = `properties` |
//! | `type: "identify"`, `traits` | `name` = `$identify`, `data` = `traits` (else `context.traits`) |
//! | `type: "page"`, `name`, `category`, `properties` | `name` = `$page`, `data` = `properties` + `name` + `category` |
//! | `type: "screen"`, `name`, `category`, `properties` | `name` = `$screen`, `data` = `properties` + `name` + `category` |
//! | `type: "group"`, `groupId`, `traits` | `name` = `$group`, `data` = `{"group_id", "traits"}` |
//! | `type: "alias"`, `previousId` | `name` = `$alias`, `data` = `{"previous_id"}` |
//! | `messageId` | `id` |
//! | `userId`, `anonymousId` (strings; numbers become strings) | `user_id`, `anonymous_id` |
//! | `timestamp` (else `originalTimestamp`) | `timestamp` |
//! | `sentAt` | `sent_at` |
//! | `context` | `context` |
//! | `integrations` (when not empty) | `context.integrations` |
//! | `channel` (else `context.library.name`) | `source` |
//! | `receivedAt`, `writeKey`, `version`, `_metadata`, other fields | not kept |
//!
//! # Invariants
//! - A message is Segment's when it has a `type`, or has no `data` and one of Segment's own
//!   fields (`event`, `messageId`, `userId`, `anonymousId`, `properties`, `traits`, …); a
//!   batch may mix both formats, each event judged alone.
//! - The mapped envelope passes the same validation as any other event.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tributary_core::Envelope;
use tributary_core::envelope::reserved::{ALIAS, GROUP, IDENTIFY, PAGE, SCREEN};

/// The Segment calls, each with its own endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentCall {
    /// `/v1/track`.
    Track,
    /// `/v1/identify`.
    Identify,
    /// `/v1/page`.
    Page,
    /// `/v1/screen`.
    Screen,
    /// `/v1/group`.
    Group,
    /// `/v1/alias`.
    Alias,
}

impl SegmentCall {
    /// The `type` of this call.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Track => "track",
            Self::Identify => "identify",
            Self::Page => "page",
            Self::Screen => "screen",
            Self::Group => "group",
            Self::Alias => "alias",
        }
    }

    fn from_type(text: &str) -> Option<Self> {
        Some(match text.to_ascii_lowercase().as_str() {
            "track" => Self::Track,
            "identify" => Self::Identify,
            "page" => Self::Page,
            "screen" => Self::Screen,
            "group" => Self::Group,
            "alias" => Self::Alias,
            _ => return None,
        })
    }
}

/// Fields only Segment messages have.
const SEGMENT_FIELDS: [&str; 14] = [
    "type",
    "event",
    "messageId",
    "userId",
    "anonymousId",
    "properties",
    "traits",
    "sentAt",
    "originalTimestamp",
    "receivedAt",
    "groupId",
    "previousId",
    "integrations",
    "writeKey",
];

/// Whether this object is a Segment message (see the module invariants).
pub fn is_segment(object: &Map<String, Value>) -> bool {
    object.contains_key("type")
        || (!object.contains_key("data")
            && SEGMENT_FIELDS
                .iter()
                .any(|field| object.contains_key(*field)))
}

/// Maps one Segment message; `call` is the endpoint's type (`None` for a batch, where the
/// message's `type` decides). Errors name the Segment field at fault.
///
/// # Errors
/// A missing or unknown `type`, a `type` that is not the endpoint's, a missing `event`,
/// `groupId`, `previousId` or `userId` (alias), or a field of the wrong type.
pub fn to_envelope(
    mut message: Map<String, Value>,
    call: Option<SegmentCall>,
) -> Result<Envelope, String> {
    let given = match message.remove("type") {
        Some(Value::String(text)) => Some(SegmentCall::from_type(&text).ok_or_else(|| {
            format!(
                "type: {text:?} is not a Segment call (track, identify, page, screen, group, alias)"
            )
        })?),
        Some(_) => return Err("type: must be a string".into()),
        None => None,
    };
    let call = match (call, given) {
        (Some(endpoint), Some(given)) if endpoint != given => {
            return Err(format!(
                "type: is {:?}, but this is the /v1/{} endpoint",
                given.as_str(),
                endpoint.as_str()
            ));
        }
        (Some(endpoint), _) => endpoint,
        (None, Some(given)) => given,
        (None, None) => {
            return Err(
                "type: is required in a Segment message (track, identify, page, screen, group, alias)"
                    .into(),
            );
        }
    };

    let mut context = match message.remove("context") {
        Some(Value::Object(context)) => context,
        Some(Value::Null) | None => Map::new(),
        Some(_) => return Err("context: must be an object".into()),
    };
    if let Some(Value::Object(integrations)) = message.remove("integrations") {
        if !integrations.is_empty() {
            context.insert("integrations".into(), Value::Object(integrations));
        }
    }
    let properties = object_field(&mut message, "properties")?;
    let traits = object_field(&mut message, "traits")?;

    let (name, data) = match call {
        SegmentCall::Track => {
            let event = match message.remove("event") {
                Some(Value::String(event)) => event,
                Some(_) => return Err("event: must be a string".into()),
                None => return Err("event: is required for a track call".into()),
            };
            (event, properties.unwrap_or_default())
        }
        SegmentCall::Identify => {
            let traits = match traits {
                Some(traits) => traits,
                None => match context.get("traits") {
                    Some(Value::Object(traits)) => traits.clone(),
                    _ => Map::new(),
                },
            };
            (IDENTIFY.to_owned(), traits)
        }
        SegmentCall::Page | SegmentCall::Screen => {
            let mut data = properties.unwrap_or_default();
            for field in ["name", "category"] {
                match message.remove(field) {
                    Some(Value::String(text)) => {
                        data.insert(field.into(), Value::String(text));
                    }
                    Some(Value::Null) | None => {}
                    Some(_) => return Err(format!("{field}: must be a string")),
                }
            }
            let name = if call == SegmentCall::Page {
                PAGE
            } else {
                SCREEN
            };
            (name.to_owned(), data)
        }
        SegmentCall::Group => {
            let group_id = id_field(&mut message, "groupId")?
                .ok_or("groupId: is required for a group call")?;
            let mut data = Map::new();
            data.insert("group_id".into(), Value::String(group_id));
            data.insert("traits".into(), Value::Object(traits.unwrap_or_default()));
            (GROUP.to_owned(), data)
        }
        SegmentCall::Alias => {
            let previous_id = id_field(&mut message, "previousId")?
                .ok_or("previousId: is required for an alias call")?;
            let mut data = Map::new();
            data.insert("previous_id".into(), Value::String(previous_id));
            (ALIAS.to_owned(), data)
        }
    };

    let mut envelope = Envelope::new(name, data);
    envelope.id = id_field(&mut message, "messageId")?;
    envelope.user_id = id_field(&mut message, "userId")?;
    envelope.anonymous_id = id_field(&mut message, "anonymousId")?;
    if call == SegmentCall::Alias && envelope.user_id.is_none() {
        return Err("userId: is required for an alias call".into());
    }
    envelope.timestamp = match time_field(&mut message, "timestamp")? {
        Some(timestamp) => Some(timestamp),
        None => time_field(&mut message, "originalTimestamp")?,
    };
    envelope.sent_at = time_field(&mut message, "sentAt")?;
    envelope.source = source(&message, &context);
    envelope.context = context;
    Ok(envelope)
}

/// An optional object field (`null` = absent).
fn object_field(
    message: &mut Map<String, Value>,
    field: &str,
) -> Result<Option<Map<String, Value>>, String> {
    match message.remove(field) {
        Some(Value::Object(object)) => Ok(Some(object)),
        Some(Value::Null) | None => Ok(None),
        Some(_) => Err(format!("{field}: must be an object")),
    }
}

/// An optional id: a string, or a number as Segment's libraries sometimes send (as text);
/// empty = absent.
fn id_field(message: &mut Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match message.remove(field) {
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(Value::Null) | None => Ok(None),
        Some(_) => Err(format!("{field}: must be a string")),
    }
}

fn time_field(
    message: &mut Map<String, Value>,
    field: &str,
) -> Result<Option<OffsetDateTime>, String> {
    match message.remove(field) {
        Some(Value::String(text)) => OffsetDateTime::parse(&text, &Rfc3339)
            .map(Some)
            .map_err(|error| format!("{field}: {text:?} is not an RFC 3339 date-time ({error})")),
        Some(Value::Null) | None => Ok(None),
        Some(_) => Err(format!("{field}: must be an RFC 3339 string")),
    }
}

/// `channel` (`browser` → `web`, `mobile` → the OS when known), else the library's platform.
fn source(message: &Map<String, Value>, context: &Map<String, Value>) -> Option<String> {
    let os = context
        .get("os")
        .and_then(|os| os.get("name"))
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    let mobile = || match os.as_deref() {
        Some("ios" | "ipados") => "ios".to_owned(),
        Some("android") => "android".to_owned(),
        _ => "mobile".to_owned(),
    };
    if let Some(channel) = message.get("channel").and_then(Value::as_str) {
        return Some(match channel {
            "browser" => "web".to_owned(),
            "mobile" => mobile(),
            other => other.to_owned(),
        });
    }
    let library = context
        .get("library")
        .and_then(|library| library.get("name"))
        .and_then(Value::as_str)?;
    let library = library.to_ascii_lowercase();
    if library.contains("analytics.js") || library.contains("analytics-next") {
        Some("web".into())
    } else if library.contains("ios") || library.contains("swift") {
        Some("ios".into())
    } else if library.contains("android") || library.contains("kotlin") {
        Some("android".into())
    } else if library.contains("node")
        || library.contains("python")
        || library.contains("ruby")
        || library.contains("java")
        || library.contains("go")
        || library.contains("php")
    {
        Some("server".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(call: Option<SegmentCall>, message: Value) -> Result<Envelope, String> {
        let envelope = to_envelope(message.as_object().cloned().unwrap(), call)?;
        envelope.validate().map_err(|error| error.to_string())?;
        Ok(envelope)
    }

    #[test]
    fn every_call_type_maps_by_the_table() {
        let track = map(
            None,
            json!({"type": "track", "event": "Order Completed", "properties": {"total": 5},
                   "messageId": "m-1", "userId": "u1", "anonymousId": "a1",
                   "timestamp": "2026-11-27T10:00:00Z", "sentAt": "2026-11-27T10:00:01Z",
                   "context": {"ip": "1.2.3.4", "library": {"name": "@segment/analytics-node"}},
                   "integrations": {"Mixpanel": false}, "_metadata": {"x": 1}, "receivedAt": "2000-01-01T00:00:00Z"}),
        )
        .unwrap();
        assert_eq!(track.name, "Order Completed");
        assert_eq!(track.data, *json!({"total": 5}).as_object().unwrap());
        assert_eq!(track.id.as_deref(), Some("m-1"));
        assert_eq!(track.user_id.as_deref(), Some("u1"));
        assert_eq!(track.anonymous_id.as_deref(), Some("a1"));
        assert_eq!(
            track.timestamp,
            Some(time::macros::datetime!(2026-11-27 10:00 UTC))
        );
        assert_eq!(
            track.sent_at,
            Some(time::macros::datetime!(2026-11-27 10:00:01 UTC))
        );
        assert_eq!(track.context["integrations"], json!({"Mixpanel": false}));
        assert_eq!(track.source.as_deref(), Some("server"));
        assert_eq!(track.received_at, None, "never taken from the client");

        let identify = map(
            Some(SegmentCall::Identify),
            json!({"userId": 42, "traits": {"email": "a@example.com"}}),
        )
        .unwrap();
        assert_eq!(identify.name, "$identify");
        assert_eq!(identify.user_id.as_deref(), Some("42"));
        assert_eq!(identify.data["email"], "a@example.com");
        let from_context = map(
            None,
            json!({"type": "identify", "anonymousId": "a", "context": {"traits": {"plan": "pro"}}}),
        )
        .unwrap();
        assert_eq!(from_context.data["plan"], "pro");

        let page = map(
            None,
            json!({"type": "page", "anonymousId": "a", "name": "Home", "category": "Docs",
                   "properties": {"url": "https://example.com/"}, "channel": "browser"}),
        )
        .unwrap();
        assert_eq!(page.name, "$page");
        assert_eq!(
            page.data,
            *json!({"url": "https://example.com/", "name": "Home", "category": "Docs"})
                .as_object()
                .unwrap()
        );
        assert_eq!(page.source.as_deref(), Some("web"));

        let screen = map(
            Some(SegmentCall::Screen),
            json!({"userId": "u", "name": "Settings", "channel": "mobile",
                   "context": {"os": {"name": "iOS"}}}),
        )
        .unwrap();
        assert_eq!(screen.name, "$screen");
        assert_eq!(screen.data["name"], "Settings");
        assert_eq!(screen.source.as_deref(), Some("ios"));

        let group = map(
            None,
            json!({"type": "group", "userId": "u", "groupId": "g1", "traits": {"plan": "pro"}}),
        )
        .unwrap();
        assert_eq!(group.name, "$group");
        assert_eq!(
            group.data,
            *json!({"group_id": "g1", "traits": {"plan": "pro"}})
                .as_object()
                .unwrap()
        );

        let alias = map(
            None,
            json!({"type": "alias", "userId": "u", "previousId": "a"}),
        )
        .unwrap();
        assert_eq!(alias.name, "$alias");
        assert_eq!(alias.user_id.as_deref(), Some("u"));
        assert_eq!(alias.data["previous_id"], "a");

        let original = map(
            None,
            json!({"type": "track", "event": "x", "originalTimestamp": "2026-11-27T09:00:00Z"}),
        )
        .unwrap();
        assert_eq!(
            original.timestamp,
            Some(time::macros::datetime!(2026-11-27 09:00 UTC))
        );
    }

    #[test]
    fn errors_name_the_segment_field() {
        let cases = [
            (None, json!({"event": "x"}), "type: is required"),
            (
                None,
                json!({"type": "purchase", "event": "x"}),
                "type: \"purchase\" is not",
            ),
            (
                Some(SegmentCall::Track),
                json!({"type": "page"}),
                "this is the /v1/track endpoint",
            ),
            (None, json!({"type": "track"}), "event: is required"),
            (
                None,
                json!({"type": "track", "event": 5}),
                "event: must be a string",
            ),
            (
                None,
                json!({"type": "track", "event": "x", "properties": [1]}),
                "properties: must be an object",
            ),
            (
                None,
                json!({"type": "group", "userId": "u"}),
                "groupId: is required",
            ),
            (
                None,
                json!({"type": "alias", "previousId": "a"}),
                "userId: is required",
            ),
            (
                None,
                json!({"type": "alias", "userId": "u"}),
                "previousId: is required",
            ),
            (
                None,
                json!({"type": "track", "event": "x", "timestamp": "noon"}),
                "timestamp: \"noon\" is not",
            ),
            (
                None,
                json!({"type": "track", "event": "x", "userId": {"id": 1}}),
                "userId: must be a string",
            ),
        ];
        for (call, message, expected) in cases {
            let error = map(call, message.clone()).unwrap_err();
            assert!(error.contains(expected), "{message}: {error}");
        }
        // Validation of the mapped envelope still applies.
        let error = map(None, json!({"type": "track", "event": ""})).unwrap_err();
        assert_eq!(error, "name: must not be empty");
        let error = map(None, json!({"type": "identify"})).unwrap_err();
        assert_eq!(error, "user_id: is required");
    }

    #[test]
    fn detection() {
        let object = |value: Value| value.as_object().cloned().unwrap();
        assert!(is_segment(&object(json!({"type": "track"}))));
        assert!(is_segment(&object(json!({"event": "x", "userId": "u"}))));
        assert!(!is_segment(&object(json!({"name": "x", "data": {}}))));
        assert!(
            !is_segment(&object(json!({"name": "x", "data": {}, "userId": "u"}))),
            "a Tributary event with a typo stays one"
        );
        assert!(!is_segment(&object(json!({"name": "x"}))));
    }
}
