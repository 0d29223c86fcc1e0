//! `[destinations.NAME]` and `[retry]`: what each destination kind takes.
//!
//! | kind | required | optional |
//! |---|---|---|
//! | `sqlite` | `path` | `batch_size`, `retry` |
//! | `jsonl` | `path` | `batch_size`, `retry` |
//! | `webhook` | `url` | `secret_env`, `batch_size`, `timeout_ms`, `retry` |
//! | `mixpanel` | | `endpoint`, `token_env`, `batch_size`, `timeout_ms`, `retry` |
//! | `hubspot` | | `endpoint`, `token_env`, `batch_size`, `timeout_ms`, `retry` |
//! | `postgres` | `url_env` | `batch_size`, `retry` |

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Events per delivery when a destination does not say.
pub(crate) const DEFAULT_BATCH_SIZE: usize = 100;
/// The most events per delivery any destination may ask for.
pub(crate) const MAX_BATCH_SIZE: usize = 2_000;
/// How long a webhook (or API) request may take.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_millis(10_000);

/// One destination, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// What it is and where it is.
    pub kind: DestinationKind,
    /// Events per delivery (1 to 2,000).
    pub batch_size: usize,
    /// The retry rule's settings for this destination.
    pub retry: RetrySettings,
}

/// What a destination is, with the settings of its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationKind {
    /// A SQLite warehouse: table `events`, primary key `id`.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A file with one envelope per line.
    Jsonl {
        /// The file.
        path: PathBuf,
    },
    /// An HTTP endpoint receiving JSON arrays of envelopes.
    Webhook {
        /// Where to POST.
        url: String,
        /// The environment variable holding the signing secret (no signature when absent).
        secret_env: Option<String>,
        /// How long one request may take.
        timeout: Duration,
    },
    /// Mixpanel's import API.
    Mixpanel {
        /// Base URL.
        endpoint: String,
        /// The environment variable holding the project token.
        token_env: String,
        /// How long one request may take.
        timeout: Duration,
    },
    /// HubSpot's custom behavioural events API.
    Hubspot {
        /// Base URL.
        endpoint: String,
        /// The environment variable holding the private-app token.
        token_env: String,
        /// How long one request may take.
        timeout: Duration,
    },
    /// A PostgreSQL warehouse.
    Postgres {
        /// The environment variable holding the `postgres://` URL.
        url_env: String,
    },
}

impl DestinationKind {
    /// The `kind` value in the config file.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Jsonl { .. } => "jsonl",
            Self::Webhook { .. } => "webhook",
            Self::Mixpanel { .. } => "mixpanel",
            Self::Hubspot { .. } => "hubspot",
            Self::Postgres { .. } => "postgres",
        }
    }
}

/// The one retry rule's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    /// Attempts before the DLQ (1 = no retry).
    pub max_attempts: u32,
    /// The first backoff ceiling.
    pub base_delay: Duration,
    /// The largest backoff ceiling and the largest `Retry-After` honoured.
    pub max_delay: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_millis(60_000),
        }
    }
}

/// `[retry]` or a destination's `retry = { … }`: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    max_attempts: Option<u32>,
    base_delay_ms: Option<u64>,
    max_delay_ms: Option<u64>,
}

impl RawRetry {
    /// These settings over `defaults`; errors name the key.
    pub(super) fn resolve(
        &self,
        defaults: &RetrySettings,
    ) -> Result<RetrySettings, (String, String)> {
        let settings = RetrySettings {
            max_attempts: self.max_attempts.unwrap_or(defaults.max_attempts),
            base_delay: self
                .base_delay_ms
                .map_or(defaults.base_delay, Duration::from_millis),
            max_delay: self
                .max_delay_ms
                .map_or(defaults.max_delay, Duration::from_millis),
        };
        if settings.max_attempts == 0 {
            return Err((
                "max_attempts".into(),
                "must be at least 1 (1 = no retry)".into(),
            ));
        }
        if settings.max_delay < settings.base_delay {
            return Err((
                "max_delay_ms".into(),
                format!(
                    "must be at least base_delay_ms ({} ms)",
                    settings.base_delay.as_millis()
                ),
            ));
        }
        Ok(settings)
    }
}

/// A destination table as written: every key of every kind is optional here, and
/// [`RawDestination::resolve`] checks which ones the kind takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDestination {
    kind: String,
    path: Option<PathBuf>,
    url: Option<String>,
    secret_env: Option<String>,
    batch_size: Option<usize>,
    timeout_ms: Option<u64>,
    endpoint: Option<String>,
    token_env: Option<String>,
    url_env: Option<String>,
    retry: Option<RawRetry>,
}

const KINDS: &str = "sqlite, jsonl, webhook, mixpanel, hubspot, postgres";

impl RawDestination {
    /// Checks the keys against the kind and resolves paths against `base`. Errors are
    /// `(key, message)`.
    pub(super) fn resolve(
        self,
        name: &str,
        base: &Path,
        retry_defaults: &RetrySettings,
    ) -> Result<Destination, (String, String)> {
        if name.is_empty()
            || name
                .chars()
                .any(|character| character.is_whitespace() || character.is_control())
        {
            return Err((
                String::new(),
                format!("{name:?} is not a usable destination name"),
            ));
        }
        let allowed: &[&str] = match self.kind.as_str() {
            "sqlite" | "jsonl" => &["path", "batch_size", "retry"],
            "webhook" => &["url", "secret_env", "batch_size", "timeout_ms", "retry"],
            "mixpanel" | "hubspot" => {
                &["endpoint", "token_env", "batch_size", "timeout_ms", "retry"]
            }
            "postgres" => &["url_env", "batch_size", "retry"],
            other => {
                return Err((
                    "kind".into(),
                    format!("unknown kind {other:?}; expected one of {KINDS}"),
                ));
            }
        };
        for (key, present) in self.present_keys() {
            if present && !allowed.contains(&key) {
                return Err((
                    key.into(),
                    format!(
                        "not a setting of kind {:?} (it takes: {})",
                        self.kind,
                        allowed.join(", ")
                    ),
                ));
            }
        }
        let batch_size = self.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
            return Err((
                "batch_size".into(),
                format!("must be 1 to {MAX_BATCH_SIZE}, got {batch_size}"),
            ));
        }
        let timeout = self
            .timeout_ms
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        if timeout.is_zero() {
            return Err(("timeout_ms".into(), "must be more than 0".into()));
        }
        let retry = match &self.retry {
            Some(retry) => retry
                .resolve(retry_defaults)
                .map_err(|(key, message)| (format!("retry.{key}"), message))?,
            None => *retry_defaults,
        };
        let required = |value: Option<String>, key: &str| {
            value.filter(|value| !value.is_empty()).ok_or_else(|| {
                (
                    key.to_owned(),
                    format!("is required for kind {:?}", self.kind),
                )
            })
        };
        let kind = match self.kind.as_str() {
            "sqlite" => DestinationKind::Sqlite {
                path: base.join(self.path.clone().ok_or_else(|| {
                    (
                        "path".to_owned(),
                        "is required for kind \"sqlite\"".to_owned(),
                    )
                })?),
            },
            "jsonl" => DestinationKind::Jsonl {
                path: base.join(self.path.clone().ok_or_else(|| {
                    (
                        "path".to_owned(),
                        "is required for kind \"jsonl\"".to_owned(),
                    )
                })?),
            },
            "webhook" => {
                let url = required(self.url.clone(), "url")?;
                reqwest::Url::parse(&url).map_err(|error| {
                    ("url".to_owned(), format!("{url:?} is not a URL ({error})"))
                })?;
                DestinationKind::Webhook {
                    url,
                    secret_env: self.secret_env.clone(),
                    timeout,
                }
            }
            "mixpanel" => DestinationKind::Mixpanel {
                endpoint: self
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| "https://api.mixpanel.com".into()),
                token_env: self
                    .token_env
                    .clone()
                    .unwrap_or_else(|| "MIXPANEL_TOKEN".into()),
                timeout,
            },
            "hubspot" => DestinationKind::Hubspot {
                endpoint: self
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| "https://api.hubapi.com".into()),
                token_env: self
                    .token_env
                    .clone()
                    .unwrap_or_else(|| "HUBSPOT_TOKEN".into()),
                timeout,
            },
            _ => DestinationKind::Postgres {
                url_env: required(self.url_env.clone(), "url_env")?,
            },
        };
        Ok(Destination {
            kind,
            batch_size,
            retry,
        })
    }

    fn present_keys(&self) -> [(&'static str, bool); 9] {
        [
            ("path", self.path.is_some()),
            ("url", self.url.is_some()),
            ("secret_env", self.secret_env.is_some()),
            ("batch_size", self.batch_size.is_some()),
            ("timeout_ms", self.timeout_ms.is_some()),
            ("endpoint", self.endpoint.is_some()),
            ("token_env", self.token_env.is_some()),
            ("url_env", self.url_env.is_some()),
            ("retry", self.retry.is_some()),
        ]
    }
}
