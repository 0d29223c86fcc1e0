//! Connectors: one trait, one module per destination kind.
//!
//! A connector delivers one batch and says what happened; it never retries itself. The one
//! retry rule ([`retry`]) is applied around every connector by the delivery worker (and by
//! `dlq redrive`), so every destination retries the same way.
//!
//! - [`sqlite`]: the local warehouse (table `events`, idempotent on `id`).
//! - [`jsonl`]: one envelope per line appended to a file.
//! - [`webhook`]: `POST` of a JSON array, signed, with an idempotency key.
//! - [`mixpanel`]: Mixpanel's import API (`/import?strict=1`), partial success on `400`.
//! - [`hubspot`]: HubSpot's custom behavioural events, under a client-side rate limit.
//! - [`postgres`]: a PostgreSQL warehouse (table `events`, idempotent on `id`).
//!
//! # Invariants
//! - No secret (token, signing secret, database URL or password) appears in a [`Failure`]
//!   message, a log line or a DLQ record: secrets are read from the environment variables the
//!   configuration names, sent only in headers or to the driver, and the API and database
//!   connectors pass every message through [`support::Redactor`].
//! - [`Connector::erase`] removes a subject's events from the stores Tributary owns (`sqlite`,
//!   `postgres`, `jsonl`); the others say where to delete instead.
//! - [`Delivery::Delivered`] means the destination has the events (for files: written and
//!   synced to disk).

pub mod hubspot;
pub mod jsonl;
pub mod mixpanel;
pub mod postgres;
pub mod postgres_tls;
pub mod retry;
pub mod sqlite;
pub mod support;
pub mod webhook;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Destination, DestinationKind, MixpanelAuth};
use crate::log::LogRecord;
use crate::privacy::SubjectSet;

/// One event to deliver: its id, name, ordering key and envelope JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEvent {
    /// The event id (idempotency key).
    pub id: String,
    /// The event name.
    pub name: String,
    /// The ordering key (`anonymous_id`, else `user_id`, else `id`).
    pub partition_key: String,
    /// The envelope's JSON, as stored.
    pub json: Arc<str>,
}

impl From<&LogRecord> for OutgoingEvent {
    fn from(record: &LogRecord) -> Self {
        Self {
            id: record.id.clone(),
            name: record.name.clone(),
            partition_key: record.partition_key.clone(),
            json: record.json.clone(),
        }
    }
}

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Connection errors, timeouts, 408, 429, 5xx: back off and retry.
    Retryable,
    /// Everything else: retrying cannot help; dead-letter at once.
    Permanent,
}

impl FailureClass {
    /// `retryable` or `permanent`, as in DLQ messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retryable => "retryable",
            Self::Permanent => "permanent",
        }
    }
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Retry or not.
    pub class: FailureClass,
    /// The HTTP status, when there was one.
    pub status: Option<u16>,
    /// What happened, for people (no secrets).
    pub message: String,
    /// The destination's `Retry-After`, when it gave one.
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A retryable failure without a status (connection error, timeout, I/O error).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            class: FailureClass::Retryable,
            status: None,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A permanent failure without a status.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            class: FailureClass::Permanent,
            status: None,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// What happened to a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Every event was delivered.
    Delivered,
    /// No event was delivered.
    Failed(Failure),
    /// The events at these indexes failed (each with its reason); the others were delivered.
    Partial(Vec<(usize, Failure)>),
}

/// The future a connector returns.
pub type DeliveryFuture<'a> = Pin<Box<dyn Future<Output = Delivery> + Send + 'a>>;

/// What erasing a subject's events from a destination did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Erasure {
    /// This many events were removed.
    Erased(u64),
    /// The destination keeps the events outside Tributary's reach; what to do instead.
    Unsupported(String),
    /// Erasing failed (no secret in the message).
    Failed(String),
}

/// The future [`Connector::erase`] returns.
pub type ErasureFuture<'a> = Pin<Box<dyn Future<Output = Erasure> + Send + 'a>>;

/// Delivers batches to one destination.
pub trait Connector: Send + Sync {
    /// Delivers `events` (1 to the destination's `batch_size`) once.
    fn deliver<'a>(&'a self, events: &'a [OutgoingEvent]) -> DeliveryFuture<'a>;

    /// Removes every event of these subjects the destination holds (a privacy deletion).
    /// Stores Tributary owns (warehouses, files) do; remote services answer
    /// [`Erasure::Unsupported`] with where to delete instead.
    fn erase<'a>(&'a self, subjects: &'a SubjectSet) -> ErasureFuture<'a> {
        let _ = subjects;
        Box::pin(async {
            Erasure::Unsupported(
                "this destination keeps the events outside Tributary: delete them there".into(),
            )
        })
    }
}

/// Why a connector cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A setting or secret is missing or unusable.
    #[error("destination {destination:?}: {message}")]
    Config {
        /// The destination.
        destination: String,
        /// What is wrong.
        message: String,
    },
}

/// Builds the connector of a configured destination.
///
/// # Errors
/// A [`ConnectorError`] naming the destination: a file that cannot be opened, an unset secret
/// variable, or a kind this build cannot deliver to yet.
pub fn build(name: &str, destination: &Destination) -> Result<Arc<dyn Connector>, ConnectorError> {
    let config_error = |message: String| ConnectorError::Config {
        destination: name.to_owned(),
        message,
    };
    match &destination.kind {
        DestinationKind::Sqlite { path } => Ok(Arc::new(
            sqlite::SqliteConnector::open(path).map_err(config_error)?,
        )),
        DestinationKind::Jsonl { path } => Ok(Arc::new(
            jsonl::JsonlConnector::open(path).map_err(config_error)?,
        )),
        DestinationKind::Webhook {
            url,
            secret_env,
            timeout,
        } => {
            let secret = match secret_env {
                Some(variable) => {
                    Some(secret_from_env("secret_env", variable).map_err(config_error)?)
                }
                None => None,
            };
            Ok(Arc::new(
                webhook::WebhookConnector::new(url, secret, *timeout).map_err(config_error)?,
            ))
        }
        DestinationKind::Mixpanel {
            endpoint,
            auth,
            gzip,
            timeout,
        } => {
            let credentials = match auth {
                MixpanelAuth::ProjectToken { token_env } => mixpanel::Credentials::ProjectToken(
                    secret_from_env("token_env", token_env).map_err(config_error)?,
                ),
                MixpanelAuth::ServiceAccount {
                    username_env,
                    secret_env,
                    project_id,
                } => mixpanel::Credentials::ServiceAccount {
                    username: secret_from_env("username_env", username_env)
                        .map_err(config_error)?,
                    secret: secret_from_env("secret_env", secret_env).map_err(config_error)?,
                    project_id: project_id.clone(),
                },
            };
            Ok(Arc::new(
                mixpanel::MixpanelConnector::new(endpoint, credentials, *gzip, *timeout)
                    .map_err(config_error)?,
            ))
        }
        DestinationKind::Hubspot {
            endpoint,
            token_env,
            timeout,
            event_names,
            event_name_prefix,
            identity,
            requests_per_10s,
        } => {
            let token = secret_from_env("token_env", token_env).map_err(config_error)?;
            let mapping = hubspot::HubspotMapping {
                event_names: event_names.clone(),
                event_name_prefix: event_name_prefix.clone(),
                identity: identity.clone(),
            };
            Ok(Arc::new(
                hubspot::HubspotConnector::new(
                    endpoint,
                    token,
                    mapping,
                    *requests_per_10s,
                    *timeout,
                )
                .map_err(config_error)?,
            ))
        }
        DestinationKind::Postgres {
            url_env,
            table,
            timeout,
        } => {
            let url = secret_from_env("url_env", url_env).map_err(config_error)?;
            Ok(Arc::new(
                postgres::PostgresConnector::new(&url, table, *timeout).map_err(|message| {
                    config_error(format!("url_env names {url_env}, but {message}"))
                })?,
            ))
        }
    }
}

/// For destinations whose events live outside Tributary: where a privacy deletion must happen
/// instead (`None` for the stores [`Connector::erase`] cleans).
pub fn erased_elsewhere(kind: &DestinationKind) -> Option<&'static str> {
    match kind {
        DestinationKind::Mixpanel { .. } => Some(mixpanel::ERASED_ELSEWHERE),
        DestinationKind::Hubspot { .. } => Some(hubspot::ERASED_ELSEWHERE),
        DestinationKind::Webhook { .. } => Some(webhook::ERASED_ELSEWHERE),
        DestinationKind::Sqlite { .. }
        | DestinationKind::Jsonl { .. }
        | DestinationKind::Postgres { .. } => None,
    }
}

/// The value of the environment variable a `*_env` key names; the error names the key and
/// the variable, never a value.
fn secret_from_env(key: &str, variable: &str) -> Result<String, String> {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => Ok(value),
        Ok(_) => Err(format!("{key} names {variable}, which is empty")),
        Err(_) => Err(format!(
            "{key} names {variable}, which is not set in the environment"
        )),
    }
}
