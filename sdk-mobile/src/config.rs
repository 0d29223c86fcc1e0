//! What the app configures: where to send, where to store, how often to flush, the context.

use std::time::Duration;

use serde_json::{Map, Value};
use tributary_core::Policy;

use crate::error::{TributaryError, invalid};

/// The client's settings. Only `write_key`, `endpoint` and `store_path` are required; the rest
/// default to the SDK defaults (docs/SDK_DEFAULTS.md in the repository).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ClientConfig {
    /// The source's write key (sent as `Authorization: Bearer KEY`).
    pub write_key: String,
    /// The ingest's base URL, such as `https://events.example.com`; batches go to
    /// `{endpoint}/v1/batch`.
    pub endpoint: String,
    /// The SQLite file that holds the queue, the retry state and the identity (created with its
    /// folder when missing). One client per file at a time.
    pub store_path: String,
    /// The envelope's `source`: `android`, `ios`, or another platform's name.
    pub source: String,
    /// A JSON object merged into every event's `context` (app, device, os, locale, timezone,
    /// network, library), under the keys an event does not set itself. Empty means `{}`.
    #[uniffi(default = "")]
    pub context_json: String,
    /// Flush when this many events are waiting (default 20).
    #[uniffi(default = None)]
    pub flush_at_events: Option<u32>,
    /// Flush when the oldest waiting event is this old, in milliseconds (default 10,000).
    #[uniffi(default = None)]
    pub flush_interval_millis: Option<u64>,
    /// The most events kept queued; when full the oldest are evicted (default 10,000).
    #[uniffi(default = None)]
    pub capacity_events: Option<u32>,
    /// How long the uploader may take for one request, in milliseconds (default 15,000).
    #[uniffi(default = None)]
    pub upload_timeout_millis: Option<u64>,
    /// Compress batch bodies with gzip (`Content-Encoding: gzip`; default on: on a phone,
    /// bytes cost radio time, battery and data plans more than the CPU to compress them).
    #[uniffi(default = None)]
    pub gzip: Option<bool>,
}

/// The default request timeout handed to the uploader.
pub const DEFAULT_UPLOAD_TIMEOUT: Duration = Duration::from_secs(15);

/// A checked configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) batch_url: String,
    pub(crate) authorization: String,
    pub(crate) store_path: String,
    pub(crate) source: String,
    pub(crate) context: Map<String, Value>,
    pub(crate) policy: Policy,
    pub(crate) upload_timeout: Duration,
    pub(crate) gzip: bool,
}

impl ClientConfig {
    pub(crate) fn check(&self) -> Result<Settings, TributaryError> {
        if self.write_key.trim().is_empty() {
            return Err(invalid("write_key: must not be empty"));
        }
        if self.write_key.chars().any(|c| c.is_control() || c == ' ') {
            return Err(invalid(
                "write_key: must not hold spaces or control characters",
            ));
        }
        let endpoint = self.endpoint.trim().trim_end_matches('/');
        let scheme_ok = endpoint.starts_with("https://") || endpoint.starts_with("http://");
        let host = endpoint.split_once("://").map_or("", |(_, rest)| rest);
        if !scheme_ok || host.is_empty() || host.chars().any(char::is_whitespace) {
            return Err(invalid(
                "endpoint: must be an http:// or https:// URL with a host",
            ));
        }
        if self.store_path.trim().is_empty() {
            return Err(invalid("store_path: must not be empty"));
        }
        tributary_core::envelope::validation::check_text(
            "source",
            &self.source,
            tributary_core::envelope::MAX_SOURCE_CHARS,
        )
        .map_err(TributaryError::from)?;
        let context = parse_object("context_json", &self.context_json)?;

        let mut policy = Policy::mobile();
        if let Some(events) = self.flush_at_events {
            if events == 0 {
                return Err(invalid("flush_at_events: must be at least 1"));
            }
            policy.flush_at_events = events as usize;
        }
        if let Some(millis) = self.flush_interval_millis {
            policy.flush_interval = Duration::from_millis(millis);
        }
        if let Some(events) = self.capacity_events {
            if events == 0 {
                return Err(invalid("capacity_events: must be at least 1"));
            }
            policy.capacity_events = events as usize;
        }
        let upload_timeout = self
            .upload_timeout_millis
            .map_or(DEFAULT_UPLOAD_TIMEOUT, Duration::from_millis);
        Ok(Settings {
            batch_url: format!("{endpoint}/v1/batch"),
            authorization: format!("Bearer {}", self.write_key),
            store_path: self.store_path.clone(),
            source: self.source.clone(),
            context,
            policy,
            upload_timeout,
            gzip: self.gzip.unwrap_or(true),
        })
    }
}

/// Parses a JSON object passed over the FFI; an empty string is `{}`. The error names the
/// argument and the position, never the text (it may hold personal data).
pub(crate) fn parse_object(field: &str, json: &str) -> Result<Map<String, Value>, TributaryError> {
    if json.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(invalid(format!("{field}: must be a JSON object"))),
        Err(error) => Err(invalid(format!(
            "{field}: not valid JSON (line {}, column {})",
            error.line(),
            error.column()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn config() -> ClientConfig {
        ClientConfig {
            write_key: "key".into(),
            endpoint: "http://127.0.0.1:8080/".into(),
            store_path: "/tmp/x.db".into(),
            source: "android".into(),
            context_json: String::new(),
            flush_at_events: None,
            flush_interval_millis: None,
            capacity_events: None,
            upload_timeout_millis: None,
            gzip: None,
        }
    }

    #[test]
    fn builds_the_batch_url_and_defaults() {
        let settings = config().check().unwrap();
        assert_eq!(settings.batch_url, "http://127.0.0.1:8080/v1/batch");
        assert_eq!(settings.policy, Policy::mobile());
        assert_eq!(settings.upload_timeout, DEFAULT_UPLOAD_TIMEOUT);
    }

    #[test]
    fn names_the_field_at_fault() {
        let cases = [
            (
                ClientConfig {
                    write_key: " ".into(),
                    ..config()
                },
                "write_key",
            ),
            (
                ClientConfig {
                    endpoint: "ftp://x".into(),
                    ..config()
                },
                "endpoint",
            ),
            (
                ClientConfig {
                    endpoint: "https://".into(),
                    ..config()
                },
                "endpoint",
            ),
            (
                ClientConfig {
                    store_path: String::new(),
                    ..config()
                },
                "store_path",
            ),
            (
                ClientConfig {
                    context_json: "[1]".into(),
                    ..config()
                },
                "context_json",
            ),
            (
                ClientConfig {
                    context_json: "{\"a\":".into(),
                    ..config()
                },
                "context_json",
            ),
            (
                ClientConfig {
                    flush_at_events: Some(0),
                    ..config()
                },
                "flush_at_events",
            ),
        ];
        for (config, field) in cases {
            let error = config.check().unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("invalid input: {field}")),
                "{error}"
            );
        }
    }

    #[test]
    fn json_errors_never_quote_the_text() {
        let error = parse_object("properties", "{\"email\": alice@example.com}").unwrap_err();
        assert!(!error.to_string().contains("alice"), "{error}");
    }
}
