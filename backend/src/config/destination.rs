//! `[destinations.NAME]` and `[retry]`: what each destination kind takes.
//!
//! Every kind also takes `requires_consent` (a list of consent categories).
//!
//! | kind | required | optional |
//! |---|---|---|
//! | `sqlite` | `path` | `batch_size`, `retry` |
//! | `jsonl` | `path` | `batch_size`, `retry` |
//! | `webhook` | `url` | `secret_env`, `batch_size`, `timeout_ms`, `retry` |
//! | `mixpanel` | | `endpoint`, `token_env` or (`username_env`, `secret_env`, `project_id`), `gzip`, `batch_size`, `timeout_ms`, `retry` |
//! | `hubspot` | | `endpoint`, `token_env`, `event_names`, `event_name_prefix`, `identity`, `requests_per_10s`, `batch_size`, `timeout_ms`, `retry` |
//! | `postgres` | `url_env` | `table`, `batch_size`, `timeout_ms`, `retry` |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Events per delivery when a destination does not say.
pub(crate) const DEFAULT_BATCH_SIZE: usize = 100;
/// Events per delivery when a local file or database (`sqlite`, `jsonl`) does not say: each
/// batch costs a transaction or an `fdatasync`, so larger batches cost less per event, and a batch
/// goes out at once when none is in flight (no added latency at low rates).
pub(crate) const DEFAULT_LOCAL_BATCH_SIZE: usize = 1_000;
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
    /// Consent categories an event must grant (`context.consent`) to be sent here; empty =
    /// every event routed here is sent.
    pub requires_consent: Vec<String>,
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
        /// The project token or a service account.
        auth: MixpanelAuth,
        /// Whether request bodies are gzip-compressed.
        gzip: bool,
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
        /// Envelope name → HubSpot event name (`pe{HubID}_{name}`), taking precedence.
        event_names: BTreeMap<String, String>,
        /// Prefix of the HubSpot name of every event `event_names` does not map.
        event_name_prefix: Option<String>,
        /// Which envelope fields give the occurrence's `email`, `objectId` and `utk`.
        identity: HubspotIdentity,
        /// The portal's rolling 10-second request limit (100, 190 or 250).
        requests_per_10s: u32,
    },
    /// A PostgreSQL warehouse.
    Postgres {
        /// The environment variable holding the `postgres://` URL.
        url_env: String,
        /// The table (`events`, or `schema.table`).
        table: String,
        /// How long one connection attempt or write may take.
        timeout: Duration,
    },
}

/// How the Mixpanel connector authenticates to `/import`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MixpanelAuth {
    /// The project token as the Basic-auth user with an empty password.
    ProjectToken {
        /// The variable holding the token.
        token_env: String,
    },
    /// A service account (Basic auth `username:secret`) and the project id (`?project_id=`).
    ServiceAccount {
        /// The variable holding the service account's username.
        username_env: String,
        /// The variable holding the service account's secret.
        secret_env: String,
        /// The project id.
        project_id: String,
    },
}

/// Envelope fields, as dotted paths (`user_id`, `data.email`, `context.traits.email`), tried in
/// order for each HubSpot identity field; the first string found is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubspotIdentity {
    /// Paths giving `email`.
    pub email: Vec<String>,
    /// Paths giving `objectId` (a contact's record id).
    pub object_id: Vec<String>,
    /// Paths giving `utk` (the `hubspotutk` cookie).
    pub utk: Vec<String>,
}

impl Default for HubspotIdentity {
    fn default() -> Self {
        Self {
            email: vec!["context.traits.email".into(), "data.email".into()],
            object_id: Vec::new(),
            utk: vec!["context.hubspotutk".into()],
        }
    }
}

/// HubSpot's rolling 10-second limit for private apps on Free and Starter portals.
pub(crate) const DEFAULT_HUBSPOT_REQUESTS_PER_10S: u32 = 100;

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
    username_env: Option<String>,
    project_id: Option<String>,
    gzip: Option<bool>,
    event_names: Option<BTreeMap<String, String>>,
    event_name_prefix: Option<String>,
    identity: Option<RawIdentity>,
    requests_per_10s: Option<u32>,
    table: Option<String>,
    #[serde(default)]
    requires_consent: Vec<String>,
}

/// `identity = { email = …, object_id = …, utk = … }`: each a path or a list of paths.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentity {
    email: Option<OneOrMany>,
    object_id: Option<OneOrMany>,
    utk: Option<OneOrMany>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Top-level envelope fields an identity path may start with.
const IDENTITY_ROOTS: [&str; 5] = ["user_id", "anonymous_id", "id", "data", "context"];

fn check_identity_path(path: &str) -> Result<(), String> {
    let root = path.split('.').next().unwrap_or_default();
    if !IDENTITY_ROOTS.contains(&root) || path.split('.').any(str::is_empty) {
        return Err(format!(
            "{path:?} is not an envelope path such as \"user_id\", \"data.email\" or \"context.traits.email\""
        ));
    }
    Ok(())
}

/// `events`, `my_table` or `schema.table`: letters, digits and `_`, not starting with a digit.
fn check_table_name(table: &str) -> Result<(), String> {
    let parts: Vec<&str> = table.split('.').collect();
    let valid = parts.len() <= 2
        && parts.iter().all(|part| {
            !part.is_empty()
                && part.len() <= 63
                && !part.starts_with(|character: char| character.is_ascii_digit())
                && part
                    .chars()
                    .all(|character| character.is_ascii_alphanumeric() || character == '_')
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{table:?} is not a table name (letters, digits and _, optionally schema.table)"
        ))
    }
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
            "mixpanel" => &[
                "endpoint",
                "token_env",
                "username_env",
                "secret_env",
                "project_id",
                "gzip",
                "batch_size",
                "timeout_ms",
                "retry",
            ],
            "hubspot" => &[
                "endpoint",
                "token_env",
                "event_names",
                "event_name_prefix",
                "identity",
                "requests_per_10s",
                "batch_size",
                "timeout_ms",
                "retry",
            ],
            "postgres" => &["url_env", "table", "batch_size", "timeout_ms", "retry"],
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
        let batch_size = self.batch_size.unwrap_or(match self.kind.as_str() {
            "sqlite" | "jsonl" => DEFAULT_LOCAL_BATCH_SIZE,
            _ => DEFAULT_BATCH_SIZE,
        });
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
                endpoint: checked_endpoint(self.endpoint.clone(), "https://api.mixpanel.com")?,
                auth: self.mixpanel_auth()?,
                gzip: self.gzip.unwrap_or(true),
                timeout,
            },
            "hubspot" => {
                let requests_per_10s = self
                    .requests_per_10s
                    .unwrap_or(DEFAULT_HUBSPOT_REQUESTS_PER_10S);
                if !(10..=10_000).contains(&requests_per_10s) {
                    return Err((
                        "requests_per_10s".into(),
                        format!(
                            "must be 10 to 10000 (HubSpot's tiers: 100, 190 or 250), got {requests_per_10s}"
                        ),
                    ));
                }
                let event_names = self.event_names.clone().unwrap_or_default();
                if let Some((name, _)) = event_names.iter().find(|(_, to)| to.trim().is_empty()) {
                    return Err((format!("event_names.{name}"), "must not be empty".into()));
                }
                DestinationKind::Hubspot {
                    endpoint: checked_endpoint(self.endpoint.clone(), "https://api.hubapi.com")?,
                    token_env: self
                        .token_env
                        .clone()
                        .unwrap_or_else(|| "HUBSPOT_TOKEN".into()),
                    timeout,
                    event_names,
                    event_name_prefix: self.event_name_prefix.clone().filter(|p| !p.is_empty()),
                    identity: self.hubspot_identity()?,
                    requests_per_10s,
                }
            }
            _ => {
                let table = self.table.clone().unwrap_or_else(|| "events".into());
                check_table_name(&table).map_err(|message| ("table".to_owned(), message))?;
                DestinationKind::Postgres {
                    url_env: required(self.url_env.clone(), "url_env")?,
                    table,
                    timeout,
                }
            }
        };
        if let Some(blank) = self
            .requires_consent
            .iter()
            .position(|category| category.trim().is_empty())
        {
            return Err((
                format!("requires_consent[{blank}]"),
                "a consent category must not be empty".into(),
            ));
        }
        Ok(Destination {
            kind,
            batch_size,
            retry,
            requires_consent: self.requires_consent.clone(),
        })
    }

    /// The project token, or a service account when any of its keys is given (then all are).
    fn mixpanel_auth(&self) -> Result<MixpanelAuth, (String, String)> {
        let service_keys = [
            ("username_env", &self.username_env),
            ("secret_env", &self.secret_env),
            ("project_id", &self.project_id),
        ];
        if service_keys.iter().all(|(_, value)| value.is_none()) {
            return Ok(MixpanelAuth::ProjectToken {
                token_env: self
                    .token_env
                    .clone()
                    .unwrap_or_else(|| "MIXPANEL_TOKEN".into()),
            });
        }
        if self.token_env.is_some() {
            return Err((
                "token_env".into(),
                "use either token_env (project token) or username_env, secret_env and project_id (service account), not both".into(),
            ));
        }
        for (key, value) in service_keys {
            if value.as_deref().is_none_or(str::is_empty) {
                return Err((
                    key.into(),
                    "a Mixpanel service account needs username_env, secret_env and project_id"
                        .into(),
                ));
            }
        }
        Ok(MixpanelAuth::ServiceAccount {
            username_env: self.username_env.clone().unwrap_or_default(),
            secret_env: self.secret_env.clone().unwrap_or_default(),
            project_id: self.project_id.clone().unwrap_or_default(),
        })
    }

    /// The configured identity paths over the defaults, checked.
    fn hubspot_identity(&self) -> Result<HubspotIdentity, (String, String)> {
        let mut identity = HubspotIdentity::default();
        let Some(raw) = &self.identity else {
            return Ok(identity);
        };
        let fields = [
            ("email", &raw.email, &mut identity.email),
            ("object_id", &raw.object_id, &mut identity.object_id),
            ("utk", &raw.utk, &mut identity.utk),
        ];
        for (key, configured, target) in fields {
            let Some(configured) = configured else {
                continue;
            };
            let paths = match configured {
                OneOrMany::One(path) => vec![path.clone()],
                OneOrMany::Many(paths) => paths.clone(),
            };
            for path in &paths {
                check_identity_path(path)
                    .map_err(|message| (format!("identity.{key}"), message))?;
            }
            *target = paths;
        }
        Ok(identity)
    }

    fn present_keys(&self) -> [(&'static str, bool); 17] {
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
            ("username_env", self.username_env.is_some()),
            ("project_id", self.project_id.is_some()),
            ("gzip", self.gzip.is_some()),
            ("event_names", self.event_names.is_some()),
            ("event_name_prefix", self.event_name_prefix.is_some()),
            ("identity", self.identity.is_some()),
            ("requests_per_10s", self.requests_per_10s.is_some()),
            ("table", self.table.is_some()),
        ]
    }
}

/// `endpoint`, or the vendor's default, checked to be an http(s) URL.
fn checked_endpoint(endpoint: Option<String>, default: &str) -> Result<String, (String, String)> {
    let endpoint = endpoint.unwrap_or_else(|| default.to_owned());
    match reqwest::Url::parse(&endpoint) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {
            Ok(endpoint.trim_end_matches('/').to_owned())
        }
        _ => Err((
            "endpoint".into(),
            format!("{endpoint:?} is not an http(s) URL"),
        )),
    }
}
