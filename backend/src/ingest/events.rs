//! Parsing request bodies and checking each event: the format (Tributary or Segment),
//! validation, suppression, `context.ip`, ids, `received_at`, clock skew.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tributary_core::envelope::validation::without_json_position;
use tributary_core::envelope::{EventId, MAX_EVENT_BYTES};
use tributary_core::{Envelope, Timestamp};

use std::net::IpAddr;

use super::ParsedBody;
use super::errors::ApiError;
use super::segment::{self, SegmentCall};
use crate::log::IncomingEvent;
use crate::privacy::SuppressionIndex;
use crate::privacy::ip::{self, IpMode};

/// One event the ingest refused, by its index in the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// 0-based index into the request's `batch`.
    pub index: usize,
    /// What is wrong with it.
    pub error: String,
}

/// The events of a request after checking.
#[derive(Debug, Default)]
pub struct Checked {
    /// Valid events, normalized, in request order.
    pub accepted: Vec<IncomingEvent>,
    /// Invalid ones, by index.
    pub rejected: Vec<Rejected>,
    /// Valid events of suppressed users, dropped.
    pub suppressed: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
    #[serde(default, alias = "sentAt")]
    sent_at: Option<String>,
    #[serde(default, alias = "writeKey")]
    write_key: Option<String>,
    /// Segment: the default `context` of every event in the batch.
    #[serde(default)]
    context: Option<Map<String, Value>>,
    /// Segment: kept as `context.integrations` of every event.
    #[serde(default)]
    integrations: Option<Map<String, Value>>,
    /// Segment's libraries' own bookkeeping.
    #[serde(default, rename = "_metadata")]
    _metadata: Option<serde::de::IgnoredAny>,
}

/// Reads `{"batch": [...], "sent_at": "...", "write_key": "..."}`, or Segment's
/// `{"batch": [...], "sentAt": "...", "writeKey": "...", "context": {...}, "integrations": {...}}`.
///
/// # Errors
/// `400` with the line and column of malformed JSON, or naming the field of a wrong shape.
pub fn parse_batch(bytes: &[u8]) -> Result<ParsedBody<'_>, ApiError> {
    let body: BatchBody<'_> =
        serde_json::from_slice(bytes).map_err(|error| ApiError::from_json(&error))?;
    let sent_at = body.sent_at.as_deref().map(parse_sent_at).transpose()?;
    let mut context = body.context;
    if let Some(integrations) = body
        .integrations
        .filter(|integrations| !integrations.is_empty())
    {
        context
            .get_or_insert_with(Map::new)
            .entry("integrations")
            .or_insert(Value::Object(integrations));
    }
    Ok(ParsedBody {
        events: body
            .batch
            .into_iter()
            .map(|raw| Cow::Borrowed(raw.get()))
            .collect(),
        sent_at,
        write_key: body.write_key,
        context: context.filter(|context| !context.is_empty()),
    })
}

/// Reads the body of one Segment call (`/v1/track`, …): one message, whose `writeKey` (as
/// analytics.js sends it) authenticates the request.
///
/// # Errors
/// `400` for malformed JSON or a body that is not an object.
pub fn parse_segment_call(bytes: &[u8]) -> Result<ParsedBody<'_>, ApiError> {
    #[derive(Deserialize)]
    struct Call<'a> {
        #[serde(default, rename = "writeKey", borrow)]
        write_key: Option<Cow<'a, str>>,
    }
    let raw: &RawValue =
        serde_json::from_slice(bytes).map_err(|error| ApiError::from_json(&error))?;
    let call: Call<'_> = serde_json::from_str(raw.get()).map_err(|error| {
        ApiError::invalid_body(format!(
            "the body must be one Segment message (a JSON object): {}",
            without_json_position(&error.to_string())
        ))
    })?;
    Ok(ParsedBody {
        events: vec![Cow::Borrowed(raw.get())],
        sent_at: None,
        write_key: call.write_key.map(Cow::into_owned),
        context: None,
    })
}

/// Reads one event object; a `write_key` member (beacons) is taken out of it.
///
/// # Errors
/// As [`parse_batch`].
pub fn parse_single(bytes: &[u8]) -> Result<ParsedBody<'_>, ApiError> {
    let raw: &RawValue =
        serde_json::from_slice(bytes).map_err(|error| ApiError::from_json(&error))?;
    if !raw.get().contains("\"write_key\"") && !raw.get().contains("\"writeKey\"") {
        return Ok(ParsedBody {
            events: vec![Cow::Borrowed(raw.get())],
            sent_at: None,
            write_key: None,
            context: None,
        });
    }
    let mut object: Map<String, Value> = serde_json::from_str(raw.get()).map_err(|error| {
        ApiError::invalid_body(format!(
            "the body must be one event object: {}",
            without_json_position(&error.to_string())
        ))
    })?;
    let mut write_key = None;
    for field in ["write_key", "writeKey"] {
        match object.remove(field) {
            Some(Value::String(key)) => write_key = Some(key),
            Some(_) => return Err(ApiError::invalid_body(format!("{field} must be a string"))),
            None => {}
        }
    }
    let text = serde_json::to_string(&object)
        .map_err(|error| ApiError::invalid_body(error.to_string()))?;
    Ok(ParsedBody {
        events: vec![Cow::Owned(text)],
        sent_at: None,
        write_key,
        context: None,
    })
}

fn parse_sent_at(text: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|error| {
        ApiError::invalid_body(format!("sent_at: not an RFC 3339 date-time ({error})"))
    })
}

/// What applies to every event of one request.
pub struct RequestDefaults<'a> {
    /// The batch's `sent_at`, for events without their own.
    pub sent_at: Option<OffsetDateTime>,
    /// The batch's `context` (Segment), under each event's own keys.
    pub context: Option<&'a Map<String, Value>>,
    /// When the request arrived.
    pub received_at: Timestamp,
    /// The client's address, when known.
    pub client_ip: Option<IpAddr>,
    /// How much of it is kept.
    pub ip_mode: IpMode,
    /// The Segment call of the endpoint (`/v1/track`, …): every event is that call.
    pub segment_call: Option<SegmentCall>,
    /// Whose events are dropped.
    pub suppressions: &'a SuppressionIndex,
}

impl<'a> RequestDefaults<'a> {
    /// Defaults with nothing but the arrival time (no address, no suppressions).
    pub fn received_at(received_at: Timestamp, suppressions: &'a SuppressionIndex) -> Self {
        Self {
            sent_at: None,
            context: None,
            received_at,
            client_ip: None,
            ip_mode: IpMode::default(),
            segment_call: None,
            suppressions,
        }
    }
}

/// Validates, maps (Segment messages) and normalizes every event; see [`normalize`]. Events of
/// suppressed users are counted in `suppressed` and not returned.
pub fn check_events(events: &[Cow<'_, str>], defaults: &RequestDefaults<'_>) -> Checked {
    let mut checked = Checked::default();
    let mut rng = fastrand::Rng::new();
    for (index, text) in events.iter().enumerate() {
        match check_event(text, defaults, &mut rng) {
            Ok(Some(event)) => checked.accepted.push(event),
            Ok(None) => checked.suppressed += 1,
            Err(error) => checked.rejected.push(Rejected { index, error }),
        }
    }
    checked
}

/// Reads one event in either format.
fn read_event(text: &str, call: Option<SegmentCall>) -> Result<Envelope, String> {
    if call.is_none() {
        match Envelope::from_json(text) {
            Ok(envelope) => return Ok(envelope),
            Err(error) => {
                // Only a Segment message gets a second look; anything else keeps its error.
                return match serde_json::from_str::<Value>(text) {
                    Ok(Value::Object(object)) if segment::is_segment(&object) => {
                        segment_envelope(object, None)
                    }
                    _ => Err(error.to_string()),
                };
            }
        }
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => segment_envelope(object, call),
        Ok(_) => Err("event: must be a JSON object".into()),
        Err(error) => Err(format!(
            "event: not valid JSON ({})",
            without_json_position(&error.to_string())
        )),
    }
}

fn segment_envelope(
    object: Map<String, Value>,
    call: Option<SegmentCall>,
) -> Result<Envelope, String> {
    let envelope = segment::to_envelope(object, call)?;
    envelope.validate().map_err(|error| error.to_string())?;
    Ok(envelope)
}

fn check_event(
    text: &str,
    defaults: &RequestDefaults<'_>,
    rng: &mut fastrand::Rng,
) -> Result<Option<IncomingEvent>, String> {
    if text.len() > MAX_EVENT_BYTES {
        return Err(format!(
            "event: is {} bytes of JSON, over the limit of {MAX_EVENT_BYTES} bytes",
            text.len()
        ));
    }
    let mut envelope = read_event(text, defaults.segment_call)?;
    if defaults.suppressions.is_suppressed(
        envelope.user_id.as_deref(),
        envelope.anonymous_id.as_deref(),
    ) {
        return Ok(None);
    }
    if let Some(context) = defaults.context {
        for (key, value) in context {
            envelope
                .context
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
    }
    ip::apply(&mut envelope.context, defaults.client_ip, defaults.ip_mode);
    normalize(&mut envelope, defaults.sent_at, defaults.received_at, rng)?;
    let json = serde_json::to_string(&envelope).map_err(|error| format!("event: {error}"))?;
    Ok(Some(IncomingEvent {
        id: envelope.id.clone().unwrap_or_default(),
        partition_key: envelope.partition_key().to_owned(),
        name: envelope.name,
        received_at: defaults.received_at,
        json,
    }))
}

/// What the backend adds to every event:
/// - `id`: a UUIDv7 when absent;
/// - `received_at`: the ingest's clock (a client's value is overwritten);
/// - `sent_at`: the event's own, else the batch's;
/// - clock skew: with `sent_at` and `timestamp`, the client's `timestamp` is kept as
///   `original_timestamp` and `timestamp = received_at − (sent_at − original_timestamp)`;
/// - `timestamp`: `received_at` when absent.
///
/// # Errors
/// When `sent_at` and `timestamp` are so far apart (centuries) that the corrected timestamp
/// falls outside the years -9999 to 9999.
pub fn normalize(
    envelope: &mut Envelope,
    batch_sent_at: Option<OffsetDateTime>,
    received_at: Timestamp,
    rng: &mut fastrand::Rng,
) -> Result<(), String> {
    let received = received_at.to_datetime();
    if envelope.id.is_none() {
        envelope.id = Some(EventId::new_v7(received_at, rng).to_string());
    }
    envelope.received_at = Some(received);
    if envelope.sent_at.is_none() {
        envelope.sent_at = batch_sent_at;
    }
    match (envelope.timestamp, envelope.sent_at) {
        (Some(client_timestamp), Some(sent_at)) => {
            let corrected = received
                .checked_sub(sent_at - client_timestamp)
                .ok_or_else(|| {
                    format!(
                        "timestamp: {} days from sent_at, too far apart to correct the clock skew",
                        (sent_at - client_timestamp).whole_days().unsigned_abs()
                    )
                })?;
            envelope.original_timestamp = Some(client_timestamp);
            envelope.timestamp = Some(corrected);
        }
        (Some(_), None) => {}
        (None, _) => envelope.timestamp = Some(received),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const RECEIVED: Timestamp = Timestamp::from_unix_millis(1_795_773_600_000); // 2026-11-27T10:00:00Z

    fn check(body: &str) -> Checked {
        let parsed = parse_batch(body.as_bytes()).unwrap();
        let suppressions = SuppressionIndex::default();
        let mut defaults = RequestDefaults::received_at(RECEIVED, &suppressions);
        defaults.sent_at = parsed.sent_at;
        defaults.context = parsed.context.as_ref();
        check_events(&parsed.events, &defaults)
    }

    fn stored(event: &IncomingEvent) -> Envelope {
        Envelope::from_json(&event.json).unwrap()
    }

    #[test]
    fn invalid_events_are_rejected_by_index_and_valid_neighbours_kept() {
        let checked = check(
            r#"{"batch": [
                {"name": "ok-0", "data": {}},
                {"name": "", "data": {}},
                {"name": "ok-2", "data": {}},
                {"data": {}},
                {"name": "x", "data": 5},
                [1, 2],
                {"name": "ok-6", "data": {}, "propertes": {}}
            ]}"#,
        );
        let names: Vec<_> = checked
            .accepted
            .iter()
            .map(|event| event.name.as_str())
            .collect();
        assert_eq!(names, ["ok-0", "ok-2"]);
        let rejected: Vec<_> = checked
            .rejected
            .iter()
            .map(|entry| (entry.index, entry.error.as_str()))
            .collect();
        assert_eq!(rejected[0], (1, "name: must not be empty"));
        assert_eq!(rejected[1], (3, "name: is required"));
        assert_eq!(rejected[2].0, 4);
        assert!(
            rejected[2].1.starts_with("data: invalid type: integer `5`"),
            "{}",
            rejected[2].1
        );
        assert_eq!(rejected[3], (5, "event: must be a JSON object"));
        assert_eq!(rejected[4].0, 6);
        assert!(
            rejected[4].1.contains("unknown field `propertes`"),
            "{}",
            rejected[4].1
        );
    }

    #[test]
    fn an_event_over_32_kib_is_rejected_not_the_request() {
        let big = format!(
            r#"{{"name": "big", "data": {{"blob": "{}"}}}}"#,
            "x".repeat(MAX_EVENT_BYTES)
        );
        let body = format!(r#"{{"batch": [{big}, {{"name": "small", "data": {{}}}}]}}"#);
        let checked = check(&body);
        assert_eq!(checked.accepted.len(), 1);
        assert_eq!(checked.rejected[0].index, 0);
        assert!(
            checked.rejected[0]
                .error
                .contains("over the limit of 32768 bytes")
        );
    }

    #[test]
    fn ids_and_received_at_are_assigned_and_timestamps_default_to_received_at() {
        let checked = check(
            r#"{"batch": [{"name": "a", "data": {}, "received_at": "2000-01-01T00:00:00Z"}, {"id": "mine", "name": "b", "data": {}}]}"#,
        );
        let first = stored(&checked.accepted[0]);
        assert_eq!(
            uuid::Uuid::parse_str(first.id.as_deref().unwrap())
                .unwrap()
                .get_version_num(),
            7
        );
        assert_eq!(
            first.received_at,
            Some(datetime!(2026-11-27 10:00 UTC)),
            "never trusted from clients"
        );
        assert_eq!(first.timestamp, first.received_at);
        assert_eq!(checked.accepted[1].id, "mine");
        assert_eq!(
            checked.accepted[0].partition_key,
            first.id.unwrap(),
            "no anonymous or user id: the id"
        );
    }

    #[test]
    fn clock_skew_is_corrected_from_sent_at() {
        // The client's clock is 1 hour fast: it says it sent at 11:00 an event from 10:59:30.
        let checked = check(
            r#"{"sent_at": "2026-11-27T11:00:00Z", "batch": [
                {"name": "a", "data": {}, "timestamp": "2026-11-27T10:59:30Z"},
                {"name": "b", "data": {}, "timestamp": "2026-11-27T10:59:50Z", "sent_at": "2026-11-27T10:00:00Z"},
                {"name": "c", "data": {}}
            ]}"#,
        );
        let a = stored(&checked.accepted[0]);
        assert_eq!(
            a.original_timestamp,
            Some(datetime!(2026-11-27 10:59:30 UTC))
        );
        assert_eq!(
            a.timestamp,
            Some(datetime!(2026-11-27 09:59:30 UTC)),
            "30 s before it arrived"
        );
        assert_eq!(a.sent_at, Some(datetime!(2026-11-27 11:00 UTC)));
        let b = stored(&checked.accepted[1]);
        assert_eq!(
            b.timestamp,
            Some(datetime!(2026-11-27 10:59:50 UTC)),
            "its own sent_at wins"
        );
        let c = stored(&checked.accepted[2]);
        assert_eq!(c.timestamp, Some(datetime!(2026-11-27 10:00 UTC)));
        assert_eq!(c.original_timestamp, None);
    }

    #[test]
    fn a_skew_too_large_to_correct_is_rejected_beside_valid_events() {
        // Found by the `batch` fuzz target: the correction overflowed and the request panicked.
        let checked = check(
            r#"{"batch": [
                {"name": "a", "data": {}, "timestamp": "9424-01-01T00:00:00Z", "sent_at": "1010-02-01T00:00:05Z"},
                {"name": "b", "data": {}, "timestamp": "0001-01-01T00:00:00Z", "sent_at": "9999-12-31T23:59:59Z"},
                {"name": "c", "data": {}}
            ]}"#,
        );
        assert_eq!(checked.accepted.len(), 1);
        assert_eq!(checked.accepted[0].name, "c");
        let indexes: Vec<usize> = checked
            .rejected
            .iter()
            .map(|rejected| rejected.index)
            .collect();
        assert_eq!(indexes, [0, 1]);
        assert!(
            checked.rejected[0]
                .error
                .contains("too far apart to correct the clock skew"),
            "{}",
            checked.rejected[0].error
        );
    }

    #[test]
    fn body_shapes() {
        let error = parse_batch(b"{\"batch\": [1,}").unwrap_err();
        assert_eq!(error.status.as_u16(), 400);
        assert_eq!((error.line, error.column), (Some(1), Some(14)));
        assert!(parse_batch(b"{\"events\": []}").is_err());
        assert!(parse_batch(br#"{"batch": [], "sent_at": "yesterday"}"#).is_err());
        let parsed = parse_batch(br#"{"batch": [], "write_key": "k"}"#).unwrap();
        assert_eq!(parsed.write_key.as_deref(), Some("k"));

        let parsed = parse_single(br#"{"name": "a", "data": {}, "write_key": "k"}"#).unwrap();
        assert_eq!(parsed.write_key.as_deref(), Some("k"));
        assert!(!parsed.events[0].contains("write_key"));
        assert!(
            parse_single(b"[1]").is_ok(),
            "the event's own check rejects it by index"
        );
    }
}
