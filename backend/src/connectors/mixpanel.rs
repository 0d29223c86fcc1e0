//! Mixpanel: the import API, `POST {endpoint}/import?strict=1`.
//!
//! - **Auth**: the project token as the Basic-auth user with an empty password, or a service
//!   account (`username:secret`) with `&project_id=` in the query.
//! - **Body**: a JSON array of events, gzip-compressed unless `gzip = false`; at most 2,000
//!   events and 10 MB of uncompressed JSON per request (a batch over either limit is sent in
//!   several requests); an event over 1 MB is refused before sending (permanent).
//! - **Mapping** ([`to_mixpanel`]): `{"event": name, "properties": {"time": ms since epoch,
//!   "distinct_id": user_id | anonymous_id | "", "$insert_id": [`insert_id`] of the event id,
//!   "$device_id", "$user_id", …data, …some context}}`. Mixpanel deduplicates on
//!   `$insert_id`, so retries and redrives do not count twice.
//! - **Answers**: 2xx delivered. `400` is a partial success: Mixpanel imported every event
//!   except those in `failed_records` (by `index`), which are dead-lettered with Mixpanel's
//!   message; the others count as delivered. `413` splits the request in halves (down to a
//!   single event, then permanent). `429` and 5xx, timeouts and connection errors follow the
//!   retry rule (Mixpanel sends no `Retry-After`; its guidance of 2 s doubling to 60 s is
//!   `retry = { base_delay_ms = 2000, max_delay_ms = 60000 }`); `401` and other 4xx are
//!   permanent. After a failure that concerns the whole request (401, 429, 5xx, a timeout) the
//!   rest of the batch is not sent: it gets the same failure.

use std::collections::VecDeque;
use std::io::Write;
use std::ops::Range;
use std::time::Duration;

use base64::Engine;
use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::retry::failure_for_status;
use super::support::{
    self, Redactor, chunks, describe_http_error, lookup, occurred_at, parse_envelope, text,
};
use super::{
    Connector, DeliveryFuture, Erasure, ErasureFuture, Failure, FailureClass, OutgoingEvent,
};
use crate::privacy::SubjectSet;

/// Where a privacy deletion must happen instead (Mixpanel keeps the events).
pub const ERASED_ELSEWHERE: &str = "Mixpanel keeps these events: delete them with Mixpanel's GDPR API (/api/app/data-deletions/v3.0) or the project's Data Deletion settings";

/// The most events Mixpanel takes per request.
pub const MAX_EVENTS_PER_REQUEST: usize = 2_000;
/// The most uncompressed JSON Mixpanel takes per request.
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
/// The most uncompressed JSON Mixpanel takes per event.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Properties the mapping sets itself; a `data` key with one of these names is kept under
/// `data.<name>` instead.
pub const OWN_PROPERTIES: [&str; 8] = [
    "time",
    "distinct_id",
    "$insert_id",
    "token",
    "$device_id",
    "$user_id",
    "$identified_id",
    "$anon_id",
];

/// `context` fields copied to Mixpanel's default properties (when `data` does not set them).
pub const CONTEXT_PROPERTIES: [(&str, &str); 12] = [
    ("library.name", "mp_lib"),
    ("library.version", "$lib_version"),
    ("app.version", "$app_version_string"),
    ("app.build", "$app_build_number"),
    ("os.name", "$os"),
    ("os.version", "$os_version"),
    ("device.manufacturer", "$manufacturer"),
    ("device.model", "$model"),
    ("screen.width", "$screen_width"),
    ("screen.height", "$screen_height"),
    ("page.url", "$current_url"),
    ("page.referrer", "$referrer"),
];

/// Credentials for `/import`.
#[derive(Clone)]
pub enum Credentials {
    /// The project token (Basic-auth user, empty password).
    ProjectToken(String),
    /// A service account and its project.
    ServiceAccount {
        /// The account's username.
        username: String,
        /// The account's secret.
        secret: String,
        /// The project id (`?project_id=`).
        project_id: String,
    },
}

impl Credentials {
    fn basic_auth(&self) -> String {
        let pair = match self {
            Self::ProjectToken(token) => format!("{token}:"),
            Self::ServiceAccount {
                username, secret, ..
            } => format!("{username}:{secret}"),
        };
        base64::engine::general_purpose::STANDARD.encode(pair)
    }

    fn secrets(&self) -> Vec<String> {
        let mut secrets = match self {
            Self::ProjectToken(token) => vec![token.clone()],
            Self::ServiceAccount { secret, .. } => vec![secret.clone()],
        };
        secrets.push(self.basic_auth());
        secrets
    }
}

/// Delivers to one Mixpanel project.
pub struct MixpanelConnector {
    client: reqwest::Client,
    url: String,
    authorization: HeaderValue,
    gzip: bool,
    redactor: Redactor,
}

impl MixpanelConnector {
    /// A connector posting to `{endpoint}/import?strict=1`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        endpoint: &str,
        credentials: Credentials,
        gzip: bool,
        timeout: Duration,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tributary-mixpanel/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
        let mut url = format!("{}/import?strict=1", endpoint.trim_end_matches('/'));
        if let Credentials::ServiceAccount { project_id, .. } = &credentials {
            url.push_str("&project_id=");
            url.push_str(&utf8_percent_encode(project_id));
        }
        let mut authorization =
            HeaderValue::from_str(&format!("Basic {}", credentials.basic_auth()))
                .map_err(|_| "the Mixpanel credentials cannot go in a header".to_owned())?;
        authorization.set_sensitive(true);
        Ok(Self {
            client,
            url,
            authorization,
            gzip,
            redactor: Redactor::new(credentials.secrets()),
        })
    }

    async fn post(&self, events: &[&[u8]]) -> RequestOutcome {
        let mut body = Vec::with_capacity(events.iter().map(|event| event.len() + 1).sum());
        body.push(b'[');
        for (index, event) in events.iter().enumerate() {
            if index > 0 {
                body.push(b',');
            }
            body.extend_from_slice(event);
        }
        body.push(b']');
        let mut request = self
            .client
            .post(&self.url)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, "application/json");
        if self.gzip {
            let mut encoder =
                GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
            if encoder.write_all(&body).is_ok()
                && let Ok(compressed) = encoder.finish()
            {
                body = compressed;
                request = request.header(CONTENT_ENCODING, "gzip");
            }
        }
        let response = match request.body(body).send().await {
            Ok(response) => response,
            Err(error) => {
                return RequestOutcome::Failed(Failure::retryable(format!(
                    "Mixpanel: {}",
                    describe_http_error(&error)
                )));
            }
        };
        let status = response.status().as_u16();
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(error) if (200..300).contains(&status) => {
                // The answer was a success; its body is informational.
                tracing::debug!(message = "Mixpanel answer body unreadable", %error);
                return RequestOutcome::Imported;
            }
            Err(error) => {
                return RequestOutcome::Failed(Failure::retryable(format!(
                    "Mixpanel: HTTP {status}, then {}",
                    describe_http_error(&error)
                )));
            }
        };
        match status {
            200..=299 => RequestOutcome::Imported,
            400 => match serde_json::from_slice::<ImportAnswer>(&body) {
                Ok(answer) if !answer.failed_records.is_empty() => {
                    RequestOutcome::SomeFailed(answer.failed_records)
                }
                _ => RequestOutcome::Failed(mixpanel_failure(status, &body)),
            },
            413 => RequestOutcome::TooLarge(mixpanel_failure(status, &body)),
            _ => RequestOutcome::Failed(mixpanel_failure(status, &body)),
        }
    }
}

enum RequestOutcome {
    Imported,
    SomeFailed(Vec<FailedRecord>),
    TooLarge(Failure),
    Failed(Failure),
}

/// Mixpanel's answer (`strict=1`).
#[derive(Debug, Deserialize)]
struct ImportAnswer {
    #[serde(default)]
    failed_records: Vec<FailedRecord>,
}

/// One entry of `failed_records`.
#[derive(Debug, Clone, Deserialize)]
pub struct FailedRecord {
    /// Position in the request's array.
    pub index: usize,
    /// The event's `$insert_id`.
    #[serde(default)]
    pub insert_id: Option<String>,
    /// The field at fault, e.g. `properties.time`.
    #[serde(default)]
    pub field: Option<String>,
    /// Mixpanel's message.
    #[serde(default)]
    pub message: Option<String>,
}

/// A failure for a non-2xx answer, with Mixpanel's `error` when the body has one.
fn mixpanel_failure(status: u16, body: &[u8]) -> Failure {
    let mut failure = failure_for_status(status, None, body);
    if let Ok(answer) = serde_json::from_slice::<Value>(body)
        && let Some(error) = answer.get("error").and_then(Value::as_str)
    {
        failure.message = format!("Mixpanel: HTTP {status}: {error}");
    } else {
        failure.message = format!("Mixpanel: {}", failure.message);
    }
    failure
}

impl Connector for MixpanelConnector {
    fn deliver<'a>(&'a self, events: &'a [OutgoingEvent]) -> DeliveryFuture<'a> {
        Box::pin(async move {
            let mut failures: Vec<(usize, Failure)> = Vec::new();
            // (index in the batch, mapped JSON)
            let mut mapped: Vec<(usize, Vec<u8>)> = Vec::with_capacity(events.len());
            for (index, event) in events.iter().enumerate() {
                let result = parse_envelope(event).and_then(|envelope| to_mixpanel(&envelope));
                match result.map(|value| value.to_string().into_bytes()) {
                    Ok(json) if json.len() > MAX_EVENT_BYTES => failures.push((
                        index,
                        Failure::permanent(format!(
                            "Mixpanel: event {} is {} bytes of JSON, over Mixpanel's limit of {MAX_EVENT_BYTES} bytes per event",
                            event.id,
                            json.len()
                        )),
                    )),
                    Ok(json) => mapped.push((index, json)),
                    Err(message) => failures.push((
                        index,
                        Failure::permanent(format!("Mixpanel: cannot map the event: {message}")),
                    )),
                }
            }
            let sizes: Vec<usize> = mapped.iter().map(|(_, json)| json.len()).collect();
            let mut pending: VecDeque<Range<usize>> =
                chunks(&sizes, MAX_EVENTS_PER_REQUEST, MAX_REQUEST_BYTES).into();
            while let Some(range) = pending.pop_front() {
                let group = &mapped[range.clone()];
                let bodies: Vec<&[u8]> = group.iter().map(|(_, json)| json.as_slice()).collect();
                match self.post(&bodies).await {
                    RequestOutcome::Imported => {}
                    RequestOutcome::SomeFailed(records) => {
                        for record in records {
                            let Some((index, _)) = group.get(record.index) else {
                                continue;
                            };
                            let what = match (&record.field, &record.message) {
                                (Some(field), Some(message)) => format!("{field}: {message}"),
                                (None, Some(message)) => message.clone(),
                                (Some(field), None) => format!("{field} is invalid"),
                                (None, None) => "failed validation".to_owned(),
                            };
                            failures.push((
                                *index,
                                Failure {
                                    class: FailureClass::Permanent,
                                    status: Some(400),
                                    message: format!("Mixpanel rejected the event: {what}"),
                                    retry_after: None,
                                },
                            ));
                        }
                    }
                    RequestOutcome::TooLarge(failure) => {
                        if range.len() > 1 {
                            let middle = range.start + range.len() / 2;
                            pending.push_front(middle..range.end);
                            pending.push_front(range.start..middle);
                        } else {
                            failures
                                .extend(group.iter().map(|(index, _)| (*index, failure.clone())));
                        }
                    }
                    RequestOutcome::Failed(failure) => {
                        // The same answer awaits the rest of the batch: do not send it.
                        failures.extend(group.iter().map(|(index, _)| (*index, failure.clone())));
                        for rest in pending.drain(..) {
                            failures.extend(
                                mapped[rest]
                                    .iter()
                                    .map(|(index, _)| (*index, failure.clone())),
                            );
                        }
                    }
                }
            }
            let failures = failures
                .into_iter()
                .map(|(index, failure)| (index, self.redactor.failure(failure)))
                .collect();
            support::outcome(events.len(), failures)
        })
    }

    fn erase<'a>(&'a self, _subjects: &'a SubjectSet) -> ErasureFuture<'a> {
        Box::pin(async { Erasure::Unsupported(ERASED_ELSEWHERE.into()) })
    }
}

/// The `$insert_id` of an event id: the id itself when it is at most 36 characters of ASCII
/// letters, digits and `-` (a UUID is), else the first 32 hex digits of its SHA-256.
pub fn insert_id(event_id: &str) -> String {
    let usable = !event_id.is_empty()
        && event_id.len() <= 36
        && event_id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-');
    if usable {
        event_id.to_owned()
    } else {
        hex::encode(&Sha256::digest(event_id.as_bytes())[..16])
    }
}

/// Mixpanel's name for an event: `$page` is Mixpanel's web page view, `$alias` its alias
/// event; every other name (reserved ones included) is kept.
pub fn event_name(name: &str) -> &str {
    match name {
        "$page" => "$mp_web_page_view",
        "$alias" => "$create_alias",
        other => other,
    }
}

/// Maps an envelope to a Mixpanel event (pure).
///
/// # Errors
/// When the envelope has no `id` or `name`, its `data` is not an object, or it has no usable
/// time.
pub fn to_mixpanel(envelope: &Value) -> Result<Value, String> {
    let id = text(envelope, "id").ok_or("the event has no id")?;
    let name = text(envelope, "name").ok_or("the event has no name")?;
    let time = occurred_at(envelope)?;
    let millis = i64::try_from(time.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| "the event's time is out of range".to_owned())?;
    let user_id = text(envelope, "user_id");
    let anonymous_id = text(envelope, "anonymous_id");

    let mut properties = Map::new();
    properties.insert("time".into(), json!(millis));
    properties.insert(
        "distinct_id".into(),
        json!(user_id.or(anonymous_id).unwrap_or("")),
    );
    properties.insert("$insert_id".into(), json!(insert_id(id)));
    if let Some(anonymous_id) = anonymous_id {
        properties.insert("$device_id".into(), json!(anonymous_id));
    }
    if let Some(user_id) = user_id {
        properties.insert("$user_id".into(), json!(user_id));
    }
    match envelope.get("data") {
        None | Some(Value::Null) => {}
        Some(Value::Object(data)) => {
            for (key, value) in data {
                if OWN_PROPERTIES.contains(&key.as_str()) {
                    properties.insert(format!("data.{key}"), value.clone());
                } else {
                    properties.insert(key.clone(), value.clone());
                }
            }
        }
        Some(_) => return Err("data is not an object".into()),
    }
    for (path, property) in CONTEXT_PROPERTIES {
        if properties.contains_key(property) {
            continue;
        }
        if let Some(value) = envelope
            .get("context")
            .and_then(|context| lookup(context, path))
            && !value.is_null()
        {
            properties.insert(property.into(), value.clone());
        }
    }
    if let Some(ip) = envelope
        .get("context")
        .and_then(|context| lookup(context, "ip"))
        && ip.is_string()
    {
        properties.entry("ip").or_insert_with(|| ip.clone());
    }
    match name {
        "$identify" => {
            if let (Some(user_id), Some(anonymous_id)) = (user_id, anonymous_id) {
                properties.insert("$identified_id".into(), json!(user_id));
                properties.insert("$anon_id".into(), json!(anonymous_id));
            }
        }
        "$page" => {
            if let Some(url) = envelope.get("data").and_then(|data| data.get("url"))
                && url.is_string()
            {
                properties.insert("$current_url".into(), url.clone());
            }
        }
        "$alias" => {
            // Mixpanel's alias event: `alias` = the new id, distinct_id = the previous one.
            if let Some(previous) = lookup(envelope, "data.previous_id").and_then(Value::as_str) {
                properties.insert("distinct_id".into(), json!(previous));
            }
            if let Some(user_id) = user_id {
                properties.insert("alias".into(), json!(user_id));
            }
        }
        _ => {}
    }
    Ok(json!({"event": event_name(name), "properties": properties}))
}

/// Percent-encodes a query value (letters, digits and `-._~` stay).
fn utf8_percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Value {
        json!({
            "id": "0190a6d4-1f2e-7c3b-9a4d-5e6f7a8b9c0d",
            "name": "button_click",
            "data": {"button": "buy", "time": "data's own time", "price": 5.0},
            "timestamp": "2021-04-18T03:27:57Z",
            "received_at": "2021-04-18T03:27:58.250Z",
            "anonymous_id": "anon-1",
            "user_id": "user-42",
            "source": "web",
            "context": {"library": {"name": "tributary-web", "version": "0.1.0"},
                        "page": {"url": "https://example.com/shop"},
                        "os": {"name": "macOS"}, "ip": "203.0.113.9",
                        "traits": {"email": "a@example.com"}}
        })
    }

    #[test]
    fn maps_the_envelope() {
        let event = to_mixpanel(&envelope()).unwrap();
        assert_eq!(
            event,
            json!({
                "event": "button_click",
                "properties": {
                    "time": 1_618_716_477_000_i64,
                    "distinct_id": "user-42",
                    "$insert_id": "0190a6d4-1f2e-7c3b-9a4d-5e6f7a8b9c0d",
                    "$device_id": "anon-1",
                    "$user_id": "user-42",
                    "button": "buy",
                    "data.time": "data's own time",
                    "price": 5.0,
                    "mp_lib": "tributary-web",
                    "$lib_version": "0.1.0",
                    "$os": "macOS",
                    "$current_url": "https://example.com/shop",
                    "ip": "203.0.113.9"
                }
            })
        );
    }

    #[test]
    fn distinct_id_falls_back_to_anonymous_id_then_empty() {
        let mut value = envelope();
        value.as_object_mut().unwrap().remove("user_id");
        let event = to_mixpanel(&value).unwrap();
        assert_eq!(event["properties"]["distinct_id"], "anon-1");
        assert!(event["properties"].get("$user_id").is_none());
        value.as_object_mut().unwrap().remove("anonymous_id");
        let event = to_mixpanel(&value).unwrap();
        assert_eq!(event["properties"]["distinct_id"], "");
    }

    #[test]
    fn time_comes_from_received_at_without_timestamp() {
        let mut value = envelope();
        value.as_object_mut().unwrap().remove("timestamp");
        let event = to_mixpanel(&value).unwrap();
        assert_eq!(event["properties"]["time"], 1_618_716_478_250_i64);
        value.as_object_mut().unwrap().remove("received_at");
        assert!(
            to_mixpanel(&value)
                .unwrap_err()
                .contains("neither timestamp")
        );
    }

    #[test]
    fn insert_ids_are_at_most_36_safe_characters() {
        assert_eq!(insert_id("abc-123"), "abc-123");
        let long = "x".repeat(64);
        let derived = insert_id(&long);
        assert_eq!(derived.len(), 32);
        assert_eq!(derived, insert_id(&long), "stable");
        assert_ne!(insert_id("a b"), "a b");
        assert!(insert_id("a_b").bytes().all(|b| b.is_ascii_hexdigit()));
        // sha256("a_b") starts with these bytes (computed independently).
        assert_eq!(insert_id("a_b"), hex::encode(&Sha256::digest(b"a_b")[..16]));
    }

    #[test]
    fn reserved_events() {
        let identify = json!({"id": "i1", "name": "$identify", "data": {"plan": "pro"},
            "received_at": "2026-01-01T00:00:00Z", "user_id": "u1", "anonymous_id": "a1"});
        let event = to_mixpanel(&identify).unwrap();
        assert_eq!(event["event"], "$identify");
        assert_eq!(event["properties"]["$identified_id"], "u1");
        assert_eq!(event["properties"]["$anon_id"], "a1");
        assert_eq!(event["properties"]["plan"], "pro");

        let page = json!({"id": "p1", "name": "$page", "data": {"url": "https://x.test/a", "name": "A"},
            "received_at": "2026-01-01T00:00:00Z"});
        let event = to_mixpanel(&page).unwrap();
        assert_eq!(event["event"], "$mp_web_page_view");
        assert_eq!(event["properties"]["$current_url"], "https://x.test/a");

        let alias = json!({"id": "l1", "name": "$alias", "data": {"previous_id": "anon-9"},
            "received_at": "2026-01-01T00:00:00Z", "user_id": "u9"});
        let event = to_mixpanel(&alias).unwrap();
        assert_eq!(event["event"], "$create_alias");
        assert_eq!(event["properties"]["distinct_id"], "anon-9");
        assert_eq!(event["properties"]["alias"], "u9");

        for name in ["$screen", "$group"] {
            let value =
                json!({"id": "s", "name": name, "data": {}, "received_at": "2026-01-01T00:00:00Z"});
            assert_eq!(to_mixpanel(&value).unwrap()["event"], name);
        }
    }

    #[test]
    fn unusable_envelopes_are_errors() {
        assert!(to_mixpanel(&json!({"name": "x", "received_at": "2026-01-01T00:00:00Z"})).is_err());
        assert!(
            to_mixpanel(
                &json!({"id": "1", "name": "x", "data": [1], "received_at": "2026-01-01T00:00:00Z"})
            )
            .is_err()
        );
    }

    #[test]
    fn credentials() {
        let token = Credentials::ProjectToken("tok".into());
        assert_eq!(token.basic_auth(), "dG9rOg==", "base64(\"tok:\")");
        let account = Credentials::ServiceAccount {
            username: "sa.user".into(),
            secret: "pw".into(),
            project_id: "12 3".into(),
        };
        assert_eq!(account.basic_auth(), "c2EudXNlcjpwdw==");
        assert_eq!(utf8_percent_encode("12 3"), "12%203");
    }
}
