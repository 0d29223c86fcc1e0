//! Privacy controls: client addresses, consent, suppression, deletion and the audit trail.
//! `docs/PRIVACY.md` is the user's guide; `docs/CONFIGURATION.md` has the keys.
//!
//! - [`ip`]: `context.ip` from the socket or trusted proxies, and `ip_mode`.
//! - [`consent`]: `context.consent` against a destination's `requires_consent`.
//! - [`suppression`]: the suppression list (`suppressions.json`), shared with AWS mode.
//! - [`store`]: where the list is kept (the data dir's file, or AWS mode's S3 object).
//! - [`audit`]: the audit trail of requests (`privacy-requests.jsonl`).
//! - [`requests`]: deleting, suppressing and unsuppressing, as the CLI and the admin API do it.
//! - [`admin`]: the admin HTTP endpoints (`/v1/privacy/…`).
//!
//! # Invariants
//! - A deletion is put on the suppression list (as `deleted`) before any store is touched, so
//!   the delivery workers stop sending the subject's events that are read ahead or waiting for a
//!   retry; then the log, the DLQ and every destination that can delete are cleaned; the request
//!   is recorded in the audit trail with what each store did.

pub mod admin;
pub mod audit;
pub mod consent;
pub mod ip;
pub mod requests;
pub mod store;
pub mod suppression;

use std::path::Path;

pub use audit::{Action, AuditTrail, ErasureReport, RequestRecord, StoreOutcome};
pub use consent::ConsentRequirement;
pub use ip::{IpMode, TrustedProxies};
pub use requests::PrivacyRequests;
pub use store::{ListChange, SuppressionStore};
pub use suppression::{
    LiveSuppressions, Subject, SubjectSet, SuppressionFile, SuppressionIndex, SuppressionList,
};

/// Why a privacy file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// Reading or writing failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The file does not parse.
    #[error("{path}: {message}")]
    Parse {
        /// The file (and line).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The request itself is unusable.
    #[error("{0}")]
    Invalid(String),
}

impl PrivacyError {
    pub(crate) fn io(path: &Path, error: &std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            message: error.to_string(),
        }
    }
}

/// What the ingest applies to every event before storing it.
pub struct IngestPrivacy {
    /// How much of the client's address is kept.
    pub ip_mode: IpMode,
    /// Whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// Whose events are dropped.
    pub suppressions: std::sync::Arc<LiveSuppressions>,
}

impl Default for IngestPrivacy {
    fn default() -> Self {
        Self {
            ip_mode: IpMode::default(),
            trusted_proxies: TrustedProxies::default(),
            suppressions: std::sync::Arc::new(LiveSuppressions::empty()),
        }
    }
}
