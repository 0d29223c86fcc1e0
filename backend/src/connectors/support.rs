//! What the API and database connectors share: envelope lookups, secret redaction, the
//! outcome of a batch sent in several requests, and HTTP error descriptions.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Delivery, Failure, OutgoingEvent};

/// Replaces every configured secret in a text with `[redacted]`.
///
/// Every [`Failure`] message of the API and database connectors goes through it, so a
/// destination that echoes credentials in an error body (or a driver that names them) cannot
/// put them in a log line or a DLQ record.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for these secrets (empty and very short ones are ignored).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|secret| secret.len() >= 4)
            .collect();
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// `text` with every secret replaced.
    pub fn clean(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "[redacted]");
            }
        }
        text
    }

    /// `failure` with its message cleaned.
    pub fn failure(&self, mut failure: Failure) -> Failure {
        failure.message = self.clean(&failure.message);
        failure
    }
}

/// The value at a dotted path (`user_id`, `data.email`, `context.traits.email`).
pub fn lookup<'a>(envelope: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(envelope, |value, key| value.as_object()?.get(key))
}

/// A string field of the envelope, when present and not empty.
pub fn text<'a>(envelope: &'a Value, key: &str) -> Option<&'a str> {
    envelope
        .get(key)
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
}

/// An RFC 3339 field of the envelope.
pub fn timestamp(envelope: &Value, key: &str) -> Result<Option<OffsetDateTime>, String> {
    match text(envelope, key) {
        None => Ok(None),
        Some(value) => OffsetDateTime::parse(value, &Rfc3339)
            .map(Some)
            .map_err(|error| format!("{key}: {value:?} is not RFC 3339 ({error})")),
    }
}

/// When the event happened: `timestamp`, else `received_at` (always set by the ingest).
pub fn occurred_at(envelope: &Value) -> Result<OffsetDateTime, String> {
    match timestamp(envelope, "timestamp")? {
        Some(time) => Ok(time),
        None => timestamp(envelope, "received_at")?
            .ok_or_else(|| "the event has neither timestamp nor received_at".to_owned()),
    }
}

/// Parses a stored envelope, which must be a JSON object.
pub fn parse_envelope(event: &OutgoingEvent) -> Result<Value, String> {
    match serde_json::from_str::<Value>(&event.json) {
        Ok(value) if value.is_object() => Ok(value),
        Ok(_) => Err(format!("event {} is not a JSON object", event.id)),
        Err(error) => Err(format!("event {} is not JSON: {error}", event.id)),
    }
}

/// The outcome of a batch from the failures of some of its events (by index): none is
/// [`Delivery::Delivered`]; the same failure for every event is [`Delivery::Failed`]; anything
/// else is [`Delivery::Partial`].
pub fn outcome(total: usize, mut failures: Vec<(usize, Failure)>) -> Delivery {
    if failures.is_empty() {
        return Delivery::Delivered;
    }
    failures.sort_by_key(|(index, _)| *index);
    failures.dedup_by_key(|(index, _)| *index);
    let all_failed = failures.len() == total;
    let same = failures.windows(2).all(|pair| pair[0].1 == pair[1].1);
    if all_failed && same {
        let (_, failure) = failures.swap_remove(0);
        return Delivery::Failed(failure);
    }
    Delivery::Partial(failures)
}

/// A `reqwest` error with its causes, for a failure message.
pub fn describe_http_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "the request timed out".to_owned();
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Splits `items` (each with its serialized size) into groups of at most `max_items` items and
/// `max_bytes` bytes (a JSON array: brackets and commas counted). An item alone over
/// `max_bytes` gets a group of its own (the caller refuses such items beforehand).
pub fn chunks(sizes: &[usize], max_items: usize, max_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut bytes = 2;
    for (index, size) in sizes.iter().enumerate() {
        let count = index - start;
        let added = size + usize::from(count > 0);
        if count > 0 && (count >= max_items || bytes + added > max_bytes) {
            groups.push(start..index);
            start = index;
            bytes = 2 + size;
        } else {
            bytes += added;
        }
    }
    if start < sizes.len() {
        groups.push(start..sizes.len());
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::FailureClass;
    use serde_json::json;

    #[test]
    fn redaction_replaces_every_secret_longest_first() {
        let redactor = Redactor::new(["s3cr3t-token".to_owned(), "s3cr3t".to_owned(), "".into()]);
        assert_eq!(
            redactor.clean("got s3cr3t-token and s3cr3t"),
            "got [redacted] and [redacted]"
        );
        let failure = redactor.failure(Failure::permanent("HTTP 401: bad s3cr3t"));
        assert_eq!(failure.message, "HTTP 401: bad [redacted]");
    }

    #[test]
    fn lookups_and_times() {
        let envelope = json!({"user_id": "u", "context": {"traits": {"email": "a@b.c"}},
            "received_at": "2026-01-02T03:04:05.678Z"});
        assert_eq!(
            lookup(&envelope, "context.traits.email"),
            Some(&json!("a@b.c"))
        );
        assert_eq!(lookup(&envelope, "context.traits.phone"), None);
        assert_eq!(lookup(&envelope, "user_id.x"), None);
        assert_eq!(
            occurred_at(&envelope).unwrap().unix_timestamp_nanos() / 1_000_000,
            1_767_323_045_678
        );
        assert!(occurred_at(&json!({})).is_err());
        assert!(occurred_at(&json!({"timestamp": "yesterday"})).is_err());
    }

    #[test]
    fn outcomes() {
        let retry = Failure::retryable("HTTP 503");
        assert_eq!(outcome(3, vec![]), Delivery::Delivered);
        assert_eq!(
            outcome(2, vec![(1, retry.clone()), (0, retry.clone())]),
            Delivery::Failed(retry.clone())
        );
        let permanent = Failure::permanent("bad");
        let Delivery::Partial(failures) =
            outcome(3, vec![(2, permanent.clone()), (0, retry.clone())])
        else {
            panic!("partial expected")
        };
        assert_eq!(failures[0].0, 0);
        assert_eq!(failures[1].1.class, FailureClass::Permanent);
        assert!(matches!(
            outcome(2, vec![(0, retry), (1, permanent)]),
            Delivery::Partial(_)
        ));
    }

    #[test]
    fn chunks_respect_counts_and_bytes() {
        assert_eq!(chunks(&[10; 5], 2, 1_000), [0..2, 2..4, 4..5]);
        // [a,b] = 2 + 10 + 1 + 10 = 23 bytes.
        assert_eq!(chunks(&[10, 10, 10], 100, 23), [0..2, 2..3]);
        assert_eq!(chunks(&[10, 10, 10], 100, 22), [0..1, 1..2, 2..3]);
        assert_eq!(chunks(&[50, 1], 100, 20), [0..1, 1..2]);
        assert!(chunks(&[], 10, 10).is_empty());
    }
}
