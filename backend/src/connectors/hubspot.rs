//! HubSpot: custom behavioural event occurrences.
//!
//! - `POST {endpoint}/events/v3/send` with one occurrence when a request holds one event, else
//!   `POST {endpoint}/events/v3/send/batch` with `{"inputs": [occurrence, …]}` (at most
//!   [`MAX_BATCH_INPUTS`] per request; a larger batch is sent in several requests);
//!   `Authorization: Bearer <private app token>`.
//! - **Mapping** ([`HubspotMapping::occurrence`]): `eventName` from `event_names`, else
//!   `event_name_prefix` + the name in lower case with every character other than `a-z0-9_`
//!   replaced by `_`; `uuid` from the event id ([`occurrence_uuid`]), so HubSpot refuses a
//!   second copy of the same occurrence; `occurredAt` from `timestamp` (else `received_at`);
//!   `email`, `objectId`, `utk` from the configured envelope paths (an event with none of them
//!   cannot be associated with a record: permanent); `properties` from `data` (strings,
//!   numbers and booleans as they are, objects and arrays as JSON text, nulls left out).
//!   `context` is not sent: HubSpot refuses properties the event definition lacks.
//! - **Rate limit**: a client-side token bucket keeps requests within `requests_per_10s` in
//!   every 10-second window (HubSpot counts a rolling window): bursts of a tenth of it, refilled
//!   at the rest over 10 s. `X-HubSpot-RateLimit-Remaining` on an answer empties the bucket
//!   down to what HubSpot says is left.
//! - **Answers**: 2xx (HubSpot answers 204) delivered. `429` and 5xx, timeouts and connection
//!   errors follow the retry rule, with `Retry-After` when present, else the rolling window
//!   (`X-HubSpot-RateLimit-Interval-Milliseconds`) when `X-HubSpot-RateLimit-Remaining` is 0.
//!   Other 4xx are permanent, with HubSpot's `message`, `category` and `errors`.
//! - **Bisection on `400`**: HubSpot validates a batch as a whole and refuses all of it for one
//!   invalid occurrence, so a refused batch is sent again in halves, recursively, until the
//!   invalid occurrences are alone: those are dead-lettered with HubSpot's reason, the valid ones
//!   beside them delivered. A batch with `k` invalid occurrences of `n` costs at most about
//!   `2k·log2(n)` more requests (every one within `requests_per_10s`); a retryable failure of
//!   any part stops the bisection and fails the rest with it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

use super::retry::{failure_for_status, parse_retry_after};
use super::support::{
    self, Redactor, chunks, describe_http_error, lookup, occurred_at, parse_envelope, text,
};
use super::{Connector, DeliveryFuture, Erasure, ErasureFuture, Failure, OutgoingEvent};
use crate::privacy::SubjectSet;

/// Where a privacy deletion must happen instead (HubSpot keeps the events).
pub const ERASED_ELSEWHERE: &str = "HubSpot keeps these events on the contact: delete the contact with HubSpot's GDPR delete (POST /crm/v3/objects/contacts/gdpr-delete)";
use crate::config::HubspotIdentity;

/// The most occurrences per batch request.
pub const MAX_BATCH_INPUTS: usize = 500;
/// HubSpot's rolling window for `requests_per_10s`.
pub const WINDOW: Duration = Duration::from_secs(10);

const REMAINING_HEADER: &str = "x-hubspot-ratelimit-remaining";
const INTERVAL_HEADER: &str = "x-hubspot-ratelimit-interval-milliseconds";

/// How envelopes become occurrences.
#[derive(Debug, Clone, Default)]
pub struct HubspotMapping {
    /// Envelope name → HubSpot name, taking precedence.
    pub event_names: BTreeMap<String, String>,
    /// Prefix for names `event_names` does not map (e.g. `pe1234567_`).
    pub event_name_prefix: Option<String>,
    /// Where `email`, `objectId` and `utk` come from.
    pub identity: HubspotIdentity,
}

impl HubspotMapping {
    /// HubSpot's name for an event.
    pub fn event_name(&self, name: &str) -> String {
        if let Some(mapped) = self.event_names.get(name) {
            return mapped.clone();
        }
        let sanitized: String = name
            .trim_start_matches('$')
            .chars()
            .map(|character| match character.to_ascii_lowercase() {
                lower @ ('a'..='z' | '0'..='9' | '_') => lower,
                _ => '_',
            })
            .collect();
        format!(
            "{}{sanitized}",
            self.event_name_prefix.as_deref().unwrap_or_default()
        )
    }

    /// Maps an envelope to an occurrence (pure).
    ///
    /// # Errors
    /// When the envelope has no `id` or `name`, its `data` is not an object, or none of the
    /// identity paths gives a value.
    pub fn occurrence(&self, envelope: &Value) -> Result<Value, String> {
        let id = text(envelope, "id").ok_or("the event has no id")?;
        let name = text(envelope, "name").ok_or("the event has no name")?;
        let mut occurrence = Map::new();
        occurrence.insert("eventName".into(), json!(self.event_name(name)));
        occurrence.insert("uuid".into(), json!(occurrence_uuid(id)));
        let occurred = occurred_at(envelope)?
            .to_offset(time::UtcOffset::UTC)
            .format(&Rfc3339)
            .map_err(|error| format!("cannot format the time: {error}"))?;
        occurrence.insert("occurredAt".into(), json!(occurred));
        let identity = [
            ("email", &self.identity.email),
            ("objectId", &self.identity.object_id),
            ("utk", &self.identity.utk),
        ];
        let mut identified = false;
        for (field, paths) in identity {
            if let Some(value) = paths.iter().find_map(|path| identity_value(envelope, path)) {
                occurrence.insert(field.into(), json!(value));
                identified = true;
            }
        }
        if !identified {
            return Err(format!(
                "no email, objectId or utk for HubSpot to associate the occurrence with (looked at {})",
                identity
                    .iter()
                    .flat_map(|(_, paths)| paths.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let mut properties = Map::new();
        match envelope.get("data") {
            None | Some(Value::Null) => {}
            Some(Value::Object(data)) => {
                for (key, value) in data {
                    match value {
                        Value::Null => {}
                        Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                            properties.insert(key.clone(), value.clone());
                        }
                        Value::Array(_) | Value::Object(_) => {
                            properties.insert(key.clone(), json!(value.to_string()));
                        }
                    }
                }
            }
            Some(_) => return Err("data is not an object".into()),
        }
        occurrence.insert("properties".into(), Value::Object(properties));
        Ok(Value::Object(occurrence))
    }
}

/// A non-empty string (or a number, for `objectId`) at `path`.
fn identity_value(envelope: &Value, path: &str) -> Option<String> {
    match lookup(envelope, path)? {
        Value::String(text) if !text.trim().is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The occurrence `uuid` of an event id: the id when it is a UUID (the SDKs' UUIDv7), else a
/// version-8 UUID made of the first 16 bytes of its SHA-256 — stable across retries.
pub fn occurrence_uuid(event_id: &str) -> String {
    if let Ok(uuid) = uuid::Uuid::try_parse(event_id) {
        return uuid.hyphenated().to_string();
    }
    let digest = Sha256::digest(event_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// A token bucket holding at most `requests_per_10s` requests in any 10-second window: it
/// holds a tenth of the limit and refills the other nine tenths over 10 s.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket for this limit (at least 10).
    pub fn new(requests_per_10s: u32, now: Instant) -> Self {
        let limit = f64::from(requests_per_10s.max(10));
        let capacity = (limit / 10.0).floor().max(1.0);
        Self {
            capacity,
            per_second: (limit - capacity) / WINDOW.as_secs_f64(),
            tokens: capacity,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.updated = now;
    }

    /// Takes a token, or says how long until one is there.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        // A token within rounding error of whole counts as whole.
        if self.tokens >= 1.0 - 1e-9 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            Ok(())
        } else {
            let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.per_second);
            Err(wait.max(Duration::from_millis(1)))
        }
    }

    /// HubSpot says `remaining` requests are left in its window: never hold more.
    pub fn observe_remaining(&mut self, remaining: u32, now: Instant) {
        self.refill(now);
        self.tokens = self.tokens.min(f64::from(remaining));
    }
}

/// Delivers to one HubSpot portal.
pub struct HubspotConnector {
    client: reqwest::Client,
    endpoint: String,
    authorization: HeaderValue,
    mapping: HubspotMapping,
    bucket: Mutex<TokenBucket>,
    redactor: Redactor,
}

impl HubspotConnector {
    /// A connector for the portal whose private app token is `token`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built or the token cannot go in a header.
    pub fn new(
        endpoint: &str,
        token: String,
        mapping: HubspotMapping,
        requests_per_10s: u32,
        timeout: Duration,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tributary-hubspot/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the HubSpot token cannot go in a header".to_owned())?;
        authorization.set_sensitive(true);
        Ok(Self {
            client,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            authorization,
            mapping,
            bucket: Mutex::new(TokenBucket::new(requests_per_10s, Instant::now())),
            redactor: Redactor::new([token]),
        })
    }

    async fn acquire(&self) {
        loop {
            let wait = {
                let mut bucket = self
                    .bucket
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match bucket.try_take(Instant::now()) {
                    Ok(()) => return,
                    Err(wait) => wait,
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn send(&self, occurrences: &[&Value]) -> Result<(), Failure> {
        let (url, body) = match occurrences {
            [single] => (
                format!("{}/events/v3/send", self.endpoint),
                (*single).clone(),
            ),
            many => (
                format!("{}/events/v3/send/batch", self.endpoint),
                json!({ "inputs": many }),
            ),
        };
        self.acquire().await;
        let response = self
            .client
            .post(url)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|error| {
                Failure::retryable(format!("HubSpot: {}", describe_http_error(&error)))
            })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let remaining = header_number(&headers, REMAINING_HEADER);
        if let Some(remaining) = remaining {
            self.bucket
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .observe_remaining(u32::try_from(remaining).unwrap_or(u32::MAX), Instant::now());
        }
        if (200..300).contains(&status) {
            return Ok(());
        }
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after)
            .or_else(|| {
                (status == 429 && remaining == Some(0))
                    .then(|| header_number(&headers, INTERVAL_HEADER))
                    .flatten()
                    .map(Duration::from_millis)
            });
        let body = response.bytes().await.unwrap_or_default();
        Err(hubspot_failure(status, retry_after, &body))
    }
}

fn header_number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// A failure for a non-2xx answer, with HubSpot's `message`, `category` and `errors`.
fn hubspot_failure(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Failure {
    let mut failure = failure_for_status(status, retry_after, body);
    let Ok(answer) = serde_json::from_slice::<Value>(body) else {
        failure.message = format!("HubSpot: {}", failure.message);
        return failure;
    };
    let mut message = format!("HubSpot: HTTP {status}");
    if let Some(category) = answer.get("category").and_then(Value::as_str) {
        message.push_str(&format!(" {category}"));
    } else if let Some(policy) = answer.get("policyName").and_then(Value::as_str) {
        message.push_str(&format!(" {policy}"));
    }
    if let Some(text) = answer.get("message").and_then(Value::as_str) {
        message.push_str(&format!(": {text}"));
    }
    let details: Vec<String> = answer
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|error| {
            let text = error.get("message").and_then(Value::as_str)?;
            Some(match error.get("in").and_then(Value::as_str) {
                Some(place) => format!("{place}: {text}"),
                None => text.to_owned(),
            })
        })
        .collect();
    if !details.is_empty() {
        message.push_str(&format!(" ({})", details.join("; ")));
    }
    failure.message = message.chars().take(1_000).collect();
    failure
}

impl Connector for HubspotConnector {
    fn deliver<'a>(&'a self, events: &'a [OutgoingEvent]) -> DeliveryFuture<'a> {
        Box::pin(async move {
            let mut failures: Vec<(usize, Failure)> = Vec::new();
            let mut mapped: Vec<(usize, Value)> = Vec::with_capacity(events.len());
            for (index, event) in events.iter().enumerate() {
                match parse_envelope(event).and_then(|envelope| self.mapping.occurrence(&envelope))
                {
                    Ok(occurrence) => mapped.push((index, occurrence)),
                    Err(message) => failures.push((
                        index,
                        Failure::permanent(format!("HubSpot: cannot map the event: {message}")),
                    )),
                }
            }
            let sizes = vec![0; mapped.len()];
            let mut groups: std::collections::VecDeque<std::ops::Range<usize>> =
                chunks(&sizes, MAX_BATCH_INPUTS, usize::MAX).into();
            while let Some(range) = groups.pop_front() {
                let group = &mapped[range.clone()];
                let occurrences: Vec<&Value> = group.iter().map(|(_, value)| value).collect();
                if let Err(failure) = self.send(&occurrences).await {
                    if failure.status == Some(400) && group.len() > 1 {
                        // Refused whole for what may be one invalid occurrence: both halves
                        // go again, first, in order.
                        let middle = range.start + group.len() / 2;
                        groups.push_front(middle..range.end);
                        groups.push_front(range.start..middle);
                        continue;
                    }
                    // Rate limits, outages and refusals of the token concern the rest too.
                    failures.extend(group.iter().map(|(index, _)| (*index, failure.clone())));
                    if failure.status != Some(400) {
                        for rest in groups.drain(..) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> HubspotMapping {
        HubspotMapping {
            event_names: [("login".to_owned(), "pe1234567_login_event".to_owned())].into(),
            event_name_prefix: Some("pe1234567_".into()),
            identity: HubspotIdentity::default(),
        }
    }

    #[test]
    fn maps_the_envelope() {
        let envelope = json!({
            "id": "0190a6d4-1f2e-7c3b-9a4d-5e6f7a8b9c0d",
            "name": "login",
            "data": {"method": "sso", "attempt": 2, "remember": true, "tags": ["a"], "none": null},
            "timestamp": "2024-01-30T16:31:34.442+01:00",
            "received_at": "2024-01-30T15:31:35Z",
            "user_id": "user-42",
            "context": {"traits": {"email": "someone@example.com"}, "hubspotutk": "abc123"}
        });
        assert_eq!(
            mapping().occurrence(&envelope).unwrap(),
            json!({
                "eventName": "pe1234567_login_event",
                "uuid": "0190a6d4-1f2e-7c3b-9a4d-5e6f7a8b9c0d",
                "occurredAt": "2024-01-30T15:31:34.442Z",
                "email": "someone@example.com",
                "utk": "abc123",
                "properties": {"method": "sso", "attempt": 2, "remember": true, "tags": "[\"a\"]"}
            })
        );
    }

    #[test]
    fn names_default_to_the_prefix_and_a_sanitized_name() {
        let mapping = mapping();
        assert_eq!(mapping.event_name("page_view"), "pe1234567_page_view");
        assert_eq!(mapping.event_name("Email Open!"), "pe1234567_email_open_");
        assert_eq!(mapping.event_name("$page"), "pe1234567_page");
        assert_eq!(HubspotMapping::default().event_name("Search"), "search");
    }

    #[test]
    fn identity_paths_are_configurable_and_required() {
        let mut mapping = mapping();
        mapping.identity = HubspotIdentity {
            email: vec!["data.email".into()],
            object_id: vec!["user_id".into()],
            utk: vec![],
        };
        let envelope = json!({"id": "e1", "name": "search", "data": {"email": "x@example.com"},
            "user_id": 1234, "received_at": "2026-01-01T00:00:00Z"});
        let occurrence = mapping.occurrence(&envelope).unwrap();
        assert_eq!(occurrence["email"], "x@example.com");
        assert_eq!(occurrence["objectId"], "1234");
        assert!(occurrence.get("utk").is_none());
        let anonymous = json!({"id": "e2", "name": "search", "data": {}, "received_at": "2026-01-01T00:00:00Z"});
        let error = mapping.occurrence(&anonymous).unwrap_err();
        assert!(error.contains("no email, objectId or utk"), "{error}");
        assert!(error.contains("data.email, user_id"), "{error}");
    }

    #[test]
    fn uuids_are_stable() {
        assert_eq!(
            occurrence_uuid("0190A6D4-1F2E-7C3B-9A4D-5E6F7A8B9C0D"),
            "0190a6d4-1f2e-7c3b-9a4d-5e6f7a8b9c0d"
        );
        let derived = occurrence_uuid("order-17");
        assert_eq!(derived, occurrence_uuid("order-17"));
        let parsed = uuid::Uuid::parse_str(&derived).unwrap();
        assert_eq!(parsed.get_version_num(), 8);
        assert_ne!(derived, occurrence_uuid("order-18"));
    }

    #[test]
    fn the_bucket_keeps_any_10_second_window_within_the_limit() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(100, start);
        // Simulate a sender taking tokens as soon as they are there, for 60 s.
        let mut now = start;
        let mut sent = Vec::new();
        while now < start + Duration::from_secs(60) {
            match bucket.try_take(now) {
                Ok(()) => sent.push(now),
                Err(wait) => now += wait,
            }
        }
        for (index, at) in sent.iter().enumerate() {
            let in_window = sent[index..]
                .iter()
                .take_while(|later| **later < *at + WINDOW)
                .count();
            assert!(
                in_window <= 100,
                "{in_window} requests within 10 s of {index}"
            );
        }
        // Steady state: 9 per second after the burst of 10.
        assert!(
            (sent.len() as i64 - (10 + 9 * 60)).abs() <= 2,
            "{}",
            sent.len()
        );

        let mut bucket = TokenBucket::new(100, start);
        bucket.observe_remaining(0, start);
        let wait = bucket.try_take(start).unwrap_err();
        assert!(
            wait > Duration::from_millis(100) && wait < Duration::from_millis(120),
            "{wait:?}"
        );
    }

    #[test]
    fn failures_carry_hubspot_s_reason() {
        let body = br#"{"status":"error","message":"This will be a human readable message with details about the error.","errors":[{"message":"This will be a message with additional details about the error","in":"name"}],"category":"VALIDATION_ERROR","correlationId":"a43683b0-5717-4ceb-80b4-104d02915d8c"}"#;
        let failure = hubspot_failure(400, None, body);
        assert_eq!(failure.class, crate::connectors::FailureClass::Permanent);
        assert_eq!(
            failure.message,
            "HubSpot: HTTP 400 VALIDATION_ERROR: This will be a human readable message with details about the error. (name: This will be a message with additional details about the error)"
        );
        let failure = hubspot_failure(502, None, b"<html>bad gateway</html>");
        assert_eq!(
            failure.message,
            "HubSpot: HTTP 502: <html>bad gateway</html>"
        );
    }
}
