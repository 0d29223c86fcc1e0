//! The configuration file (`tributary.toml`) and its defaults.
//!
//! Every key is documented in `docs/CONFIGURATION.md`. Unknown keys are an error naming the key;
//! relative paths are relative to the config file's folder (to the working directory for the
//! built-in defaults). Secrets never appear here, only the names of environment variables that
//! hold them.
//!
//! # Invariants
//! - A [`Config`] that loaded is complete: every destination has every setting its kind needs,
//!   and every path is absolute.

mod destination;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::privacy::{IpMode, TrustedProxies};

pub use destination::{Destination, DestinationKind, HubspotIdentity, MixpanelAuth, RetrySettings};
use destination::{RawDestination, RawRetry};

/// The built-in configuration: `samples/tributary.toml`.
pub const DEFAULT_CONFIG: &str = include_str!("../../../samples/tributary.toml");
/// The built-in routing rules: `samples/rules.json`.
pub const DEFAULT_RULES: &str = include_str!("../../../samples/rules.json");
/// The file looked for in the working directory when no `--config` is given.
pub const CONFIG_FILE_NAME: &str = "tributary.toml";
/// Overrides `server.write_keys` (comma-separated).
pub const WRITE_KEYS_ENV: &str = "TRIBUTARY_WRITE_KEYS";

/// The whole configuration, resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (a file, or the built-in defaults).
    pub source: ConfigSource,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[storage]`.
    pub storage: StorageConfig,
    /// Where the routing rules are.
    pub rules: RulesSource,
    /// `[destinations.NAME]`, by name.
    pub destinations: BTreeMap<String, Destination>,
    /// `[privacy]`.
    pub privacy: PrivacyConfig,
}

/// `[privacy]`: what the ingest keeps of the client's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivacyConfig {
    /// `full`, `anonymize` (default) or `drop`.
    pub ip_mode: IpMode,
}

/// Where the configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// This file.
    File(PathBuf),
    /// The built-in defaults (`samples/tributary.toml`), relative to this folder.
    BuiltIn(PathBuf),
    /// The text of an environment variable (AWS mode's connector function), relative to this
    /// folder.
    Environment {
        /// The variable.
        variable: String,
        /// The folder relative paths are resolved against.
        base: PathBuf,
    },
}

/// Where the routing rules come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesSource {
    /// A rules file.
    File(PathBuf),
    /// The built-in `samples/rules.json`.
    BuiltIn,
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub listen: String,
    /// Keys that may send events.
    pub write_keys: Vec<String>,
    /// Origins allowed by CORS (`*` for any).
    pub allowed_origins: Vec<String>,
    /// Events per second per key; 0 = unlimited.
    pub rate_limit_per_key: u32,
    /// The environment variable holding the admin token.
    pub admin_token_env: String,
    /// Proxies whose `X-Forwarded-For` is believed (CIDRs or addresses).
    pub trusted_proxies: TrustedProxies,
    /// How long a request body may take to arrive in full (a slow sender gets `408`).
    pub body_timeout: Duration,
    /// How long a connection may take to send a request's head (else it is closed).
    pub header_timeout: Duration,
    /// The most request body bytes waiting to be made durable at once; a request beyond it is
    /// answered `503` (see `ingest::admission`).
    pub max_pending_bytes: u64,
    /// The most connections served at once; more wait in the listen queue until one closes.
    pub max_connections: usize,
}

/// `[storage]`: the durable log and the DLQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// Folder of the log, the DLQ and consumer offsets.
    pub data_dir: PathBuf,
    /// How long delivered events are kept in the log.
    pub retention: Duration,
    /// How long an accepted id is remembered to drop duplicates.
    pub dedup_window: Duration,
    /// The most bytes the log file may take; 0 = unlimited. When full, ingest answers 503.
    pub max_log_bytes: u64,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys or wrong types (toml's message names the key,
    /// line and column).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, and where.
        message: String,
    },
    /// A value is present but unusable.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The key, e.g. `destinations.hooks.url`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    routing: RawRouting,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    destinations: BTreeMap<String, RawDestination>,
    #[serde(default)]
    privacy: RawPrivacy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPrivacy {
    ip_mode: String,
}

impl Default for RawPrivacy {
    fn default() -> Self {
        Self {
            ip_mode: "anonymize".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    listen: String,
    write_keys: Vec<String>,
    allowed_origins: Vec<String>,
    rate_limit_per_key: u32,
    admin_token_env: String,
    trusted_proxies: Vec<String>,
    body_timeout: String,
    header_timeout: String,
    max_pending_bytes: u64,
    max_connections: usize,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            write_keys: vec!["dev-write-key".into()],
            allowed_origins: vec!["*".into()],
            rate_limit_per_key: 0,
            admin_token_env: "TRIBUTARY_ADMIN_TOKEN".into(),
            trusted_proxies: Vec::new(),
            body_timeout: "30s".into(),
            header_timeout: "10s".into(),
            max_pending_bytes: crate::ingest::admission::DEFAULT_MAX_PENDING_BYTES,
            max_connections: crate::http_listener::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStorage {
    data_dir: PathBuf,
    retention: String,
    dedup_window: String,
    max_log_bytes: u64,
}

impl Default for RawStorage {
    fn default() -> Self {
        Self {
            data_dir: "tributary-data".into(),
            retention: "7d".into(),
            dedup_window: "24h".into(),
            max_log_bytes: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRouting {
    rules: PathBuf,
}

impl Default for RawRouting {
    fn default() -> Self {
        Self {
            rules: "rules.json".into(),
        }
    }
}

impl Config {
    /// Loads `path`, else `./tributary.toml` when it exists, else the built-in defaults.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, the key and what is wrong.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let working_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let path = path
            .map(Path::to_path_buf)
            .or_else(|| Some(working_dir.join(CONFIG_FILE_NAME)).filter(|path| path.is_file()));
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                let path = std::path::absolute(&path).unwrap_or(path);
                Self::parse(&text, ConfigSource::File(path))
            }
            None => Self::parse(DEFAULT_CONFIG, ConfigSource::BuiltIn(working_dir)),
        }
    }

    /// Parses configuration text that came from `source`.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(text: &str, source: ConfigSource) -> Result<Self, ConfigError> {
        let label = source.label();
        let raw: RawConfig = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: label.clone(),
            message: one_line(&error),
        })?;
        let base = source.base_dir().to_path_buf();
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: label.clone(),
            key: key.to_owned(),
            message,
        };

        let mut write_keys = raw.server.write_keys;
        if let Ok(keys) = std::env::var(WRITE_KEYS_ENV) {
            write_keys = keys
                .split(',')
                .map(str::trim)
                .filter(|key| !key.is_empty())
                .map(String::from)
                .collect();
        }
        if write_keys.is_empty() {
            return Err(invalid(
                "server.write_keys",
                "at least one write key is needed".into(),
            ));
        }
        if write_keys
            .iter()
            .any(|key| key.chars().any(char::is_whitespace))
        {
            return Err(invalid(
                "server.write_keys",
                "write keys cannot contain whitespace".into(),
            ));
        }
        let max_pending_bytes = raw.server.max_pending_bytes;
        let smallest = crate::ingest::MAX_BODY_BYTES as u64;
        if !(smallest..=u64::from(u32::MAX)).contains(&max_pending_bytes) {
            return Err(invalid(
                "server.max_pending_bytes",
                format!(
                    "{max_pending_bytes} is out of range: it must be at least the largest body ({smallest} bytes) and at most {}",
                    u32::MAX
                ),
            ));
        }
        let max_connections = raw.server.max_connections;
        if !(1..=crate::http_listener::MAX_MAX_CONNECTIONS).contains(&max_connections) {
            return Err(invalid(
                "server.max_connections",
                format!(
                    "{max_connections} is out of range: it must be 1 to {}",
                    crate::http_listener::MAX_MAX_CONNECTIONS
                ),
            ));
        }
        let server = ServerConfig {
            listen: raw.server.listen,
            write_keys,
            allowed_origins: raw.server.allowed_origins,
            rate_limit_per_key: raw.server.rate_limit_per_key,
            admin_token_env: raw.server.admin_token_env,
            trusted_proxies: TrustedProxies::parse(&raw.server.trusted_proxies)
                .map_err(|message| invalid("server.trusted_proxies", message))?,
            body_timeout: positive_duration(&raw.server.body_timeout)
                .map_err(|message| invalid("server.body_timeout", message))?,
            header_timeout: positive_duration(&raw.server.header_timeout)
                .map_err(|message| invalid("server.header_timeout", message))?,
            max_pending_bytes,
            max_connections,
        };
        let privacy = PrivacyConfig {
            ip_mode: raw
                .privacy
                .ip_mode
                .parse()
                .map_err(|message| invalid("privacy.ip_mode", message))?,
        };
        let storage = StorageConfig {
            data_dir: base.join(&raw.storage.data_dir),
            retention: parse_duration(&raw.storage.retention)
                .map_err(|message| invalid("storage.retention", message))?,
            dedup_window: parse_duration(&raw.storage.dedup_window)
                .map_err(|message| invalid("storage.dedup_window", message))?,
            max_log_bytes: raw.storage.max_log_bytes,
        };
        let rules = match &source {
            ConfigSource::BuiltIn(_) => RulesSource::BuiltIn,
            ConfigSource::File(_) | ConfigSource::Environment { .. } => {
                RulesSource::File(base.join(&raw.routing.rules))
            }
        };
        let defaults = raw
            .retry
            .resolve(&RetrySettings::default())
            .map_err(|(key, message)| invalid(&format!("retry.{key}"), message))?;
        let mut destinations = BTreeMap::new();
        for (name, destination) in raw.destinations {
            let resolved =
                destination
                    .resolve(&name, &base, &defaults)
                    .map_err(|(key, message)| {
                        invalid(&format!("destinations.{name}.{key}"), message)
                    })?;
            destinations.insert(name, resolved);
        }
        Ok(Self {
            source,
            server,
            storage,
            rules,
            destinations,
            privacy,
        })
    }

    /// The text of the routing rules and the name to report errors under.
    ///
    /// # Errors
    /// When the rules file cannot be read.
    pub fn rules_text(&self) -> Result<(String, String), ConfigError> {
        match &self.rules {
            RulesSource::BuiltIn => Ok((
                DEFAULT_RULES.to_owned(),
                "<built-in samples/rules.json>".into(),
            )),
            RulesSource::File(path) => std::fs::read_to_string(path)
                .map(|text| (text, path.display().to_string()))
                .map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                }),
        }
    }
}

impl ConfigSource {
    /// How errors name this configuration.
    pub fn label(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::BuiltIn(_) => "<built-in samples/tributary.toml>".into(),
            Self::Environment { variable, .. } => format!("${variable}"),
        }
    }

    /// The folder relative paths are resolved against.
    pub fn base_dir(&self) -> &Path {
        match self {
            Self::File(path) => path.parent().unwrap_or(Path::new(".")),
            Self::BuiltIn(folder) => folder,
            Self::Environment { base, .. } => base,
        }
    }
}

/// `7d`, `24h`, `90m`, `30s`, `1h 30m` (humantime's syntax).
fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|error| format!("{text:?} is not a duration such as \"7d\" or \"24h\" ({error})"))
}

/// A duration above zero (a timeout of zero would refuse everything).
fn positive_duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| format!("{text:?} is not a positive duration such as \"30s\""))
}

/// toml's messages span several lines (with a source excerpt); keep them whole but readable.
fn one_line(error: &toml::de::Error) -> String {
    error.to_string().trim_end().to_owned()
}

#[cfg(test)]
mod tests;
