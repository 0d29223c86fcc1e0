//! Webhooks: `POST url` with a JSON array of envelopes.
//!
//! Headers:
//! - `Content-Type: application/json`
//! - `Idempotency-Key`: the event id when the batch holds one event, else the lowercase hex
//!   SHA-256 of the batch's ids joined by `,` in batch order (stable across retries and
//!   redrives of the same batch);
//! - `X-Tributary-Timestamp`: Unix seconds;
//! - `X-Tributary-Signature: sha256=<lowercase hex HMAC-SHA256(secret, timestamp + "." + body)>`
//!   over the body bytes as sent (only when a secret is configured).
//!
//! 2xx = delivered; 3xx is permanent (redirects are not followed); the rest follows the retry
//! rule. [`verify_signature`] is what a receiver runs.

use std::time::{Duration, SystemTime};

use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use sha2::{Digest, Sha256};

use super::retry::{failure_for_status, parse_retry_after};
use super::{Connector, Delivery, DeliveryFuture, Erasure, ErasureFuture, Failure, OutgoingEvent};
use crate::privacy::SubjectSet;

/// Where a privacy deletion must happen instead (the webhook keeps the events).
pub const ERASED_ELSEWHERE: &str = "the webhook's receiver keeps these events: delete them there";

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Tributary-Signature";
/// Header carrying the Unix seconds the signature covers.
pub const TIMESTAMP_HEADER: &str = "X-Tributary-Timestamp";
/// Header carrying the batch's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Delivers to one webhook URL.
pub struct WebhookConnector {
    client: reqwest::Client,
    url: String,
    secret: Option<Vec<u8>>,
}

impl WebhookConnector {
    /// A connector posting to `url`, signing with `secret` when given.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(url: &str, secret: Option<String>, timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tributary-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
        Ok(Self {
            client,
            url: url.to_owned(),
            secret: secret.map(String::into_bytes),
        })
    }
}

impl Connector for WebhookConnector {
    fn deliver<'a>(&'a self, events: &'a [OutgoingEvent]) -> DeliveryFuture<'a> {
        Box::pin(async move {
            let body = array_body(events);
            let timestamp = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
                .to_string();
            let mut request = self
                .client
                .post(&self.url)
                .header(CONTENT_TYPE, "application/json")
                .header(IDEMPOTENCY_HEADER, idempotency_key(events))
                .header(TIMESTAMP_HEADER, &timestamp);
            if let Some(secret) = &self.secret {
                let mut signature = HeaderValue::from_str(&sign(secret, &timestamp, &body))
                    .unwrap_or(HeaderValue::from_static(""));
                signature.set_sensitive(true);
                request = request.header(SIGNATURE_HEADER, signature);
            }
            let response = match request.body(body).send().await {
                Ok(response) => response,
                Err(error) if error.is_timeout() => {
                    return Delivery::Failed(Failure::retryable("the webhook timed out"));
                }
                Err(error) => return Delivery::Failed(Failure::retryable(describe(&error))),
            };
            let status = response.status().as_u16();
            if (200..300).contains(&status) {
                return Delivery::Delivered;
            }
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(parse_retry_after);
            let body = response.bytes().await.unwrap_or_default();
            Delivery::Failed(failure_for_status(status, retry_after, &body))
        })
    }

    fn erase<'a>(&'a self, _subjects: &'a SubjectSet) -> ErasureFuture<'a> {
        Box::pin(async { Erasure::Unsupported(ERASED_ELSEWHERE.into()) })
    }
}

/// `[e1,e2,…]` from the stored envelopes, byte for byte.
pub fn array_body(events: &[OutgoingEvent]) -> Vec<u8> {
    let mut body = Vec::with_capacity(
        events
            .iter()
            .map(|event| event.json.len() + 1)
            .sum::<usize>()
            + 2,
    );
    body.push(b'[');
    for (index, event) in events.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event.json.as_bytes());
    }
    body.push(b']');
    body
}

/// The event id for one event, else hex SHA-256 of the ids joined by `,`.
pub fn idempotency_key(events: &[OutgoingEvent]) -> String {
    if let [single] = events {
        return single.id.clone();
    }
    let joined = events
        .iter()
        .map(|event| event.id.as_str())
        .collect::<Vec<_>>()
        .join(",");
    hex::encode(Sha256::digest(joined.as_bytes()))
}

/// `sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a received webhook: the signature header against the secret, timestamp and body (in
/// constant time). Receivers should also refuse timestamps far from their clock (replays).
pub fn verify_signature(secret: &[u8], timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex_mac) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_mac) else {
        return false;
    };
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> OutgoingEvent {
        OutgoingEvent {
            id: id.into(),
            name: "x".into(),
            partition_key: id.into(),
            json: format!(r#"{{"id":"{id}"}}"#).into(),
        }
    }

    #[test]
    fn idempotency_keys() {
        assert_eq!(idempotency_key(&[event("a")]), "a");
        // sha256("a,b"), computed independently.
        assert_eq!(
            idempotency_key(&[event("a"), event("b")]),
            "1eb7c54d52831bbfe8942af0b1c56b7409523a59ed6ca99c1174fef7eb32c1b5"
        );
        assert_ne!(
            idempotency_key(&[event("a"), event("b")]),
            idempotency_key(&[event("b"), event("a")])
        );
    }

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let body = array_body(&[event("a"), event("b")]);
        assert_eq!(body, br#"[{"id":"a"},{"id":"b"}]"#);
        let signature = sign(b"s3cret", "1795773600", &body);
        assert!(signature.starts_with("sha256=") && signature.len() == 7 + 64);
        assert!(verify_signature(b"s3cret", "1795773600", &body, &signature));
        assert!(!verify_signature(b"other", "1795773600", &body, &signature));
        assert!(!verify_signature(
            b"s3cret",
            "1795773601",
            &body,
            &signature
        ));
        assert!(!verify_signature(
            b"s3cret",
            "1795773600",
            b"[]",
            &signature
        ));
    }

    #[test]
    fn known_vector() {
        // Computed independently with Python's hmac module.
        let signature = sign(b"s3cret", "1795773600", br#"[{"id":"a"}]"#);
        assert_eq!(
            signature,
            "sha256=0ce96a30d6a373c19eed021b2352b09d65b091a9cf8ec6c265d029639fe8973c"
        );
    }
}
