//! The audit trail: every privacy request, one JSON object per line in
//! `privacy-requests.jsonl` in the data dir, appended and synced before the request is answered.
//!
//! ```json
//! {"id": "0193…", "action": "delete", "subjects": [{"user_id": "u-42"}], "via": "cli",
//!  "requested_at": "…", "completed_at": "…",
//!  "erasure": {"log": 12, "dlq_events": 1, "destinations": {"datawarehouse": {"status": "erased", "events": 11}}}}
//! ```
//!
//! # Invariants
//! - Lines are only appended (one `write` each, on a file opened for appending), so the trail of
//!   a `serve` and a `tributary privacy` command running at once interleaves whole lines.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::PrivacyError;
use super::suppression::Subject;

/// The trail's file name inside the data dir.
pub const AUDIT_FILE: &str = "privacy-requests.jsonl";

/// What was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Delete the subjects' events everywhere.
    Delete,
    /// Drop the subjects' future events.
    Suppress,
    /// Collect the subjects' events again.
    Unsuppress,
}

/// What deleting did in one store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StoreOutcome {
    /// This many events were removed.
    Erased {
        /// How many.
        events: u64,
    },
    /// The store cannot delete here: the events must be deleted at the vendor.
    Unsupported {
        /// What to do instead.
        reason: String,
    },
    /// Deleting failed; the request should be repeated.
    Failed {
        /// Why.
        error: String,
    },
}

/// What a deletion removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReport {
    /// Events removed from the local log.
    pub log: u64,
    /// Events removed from DLQ messages.
    pub dlq_events: u64,
    /// DLQ messages removed because none of their events was left.
    pub dlq_messages: u64,
    /// Each destination's outcome.
    pub destinations: BTreeMap<String, StoreOutcome>,
    /// Stores of Tributary's own that failed (the log, the DLQ).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl ErasureReport {
    /// Whether every store Tributary can delete from did (vendor-side stores aside).
    pub fn complete(&self) -> bool {
        self.errors.is_empty()
            && !self
                .destinations
                .values()
                .any(|outcome| matches!(outcome, StoreOutcome::Failed { .. }))
    }
}

/// One line of the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The request's id (UUIDv7).
    pub id: String,
    /// What was asked.
    pub action: Action,
    /// Whose events.
    pub subjects: Vec<Subject>,
    /// `cli` or `http`.
    pub via: String,
    /// Why, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// RFC 3339.
    pub requested_at: String,
    /// RFC 3339.
    pub completed_at: String,
    /// For deletions: what was removed where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erasure: Option<ErasureReport>,
}

/// The trail's file.
#[derive(Debug, Clone)]
pub struct AuditTrail {
    path: PathBuf,
}

impl AuditTrail {
    /// `privacy-requests.jsonl` in `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(AUDIT_FILE),
        }
    }

    /// Appends a record durably.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn append(&self, record: &RequestRecord) -> Result<(), PrivacyError> {
        let mut line = serde_json::to_string(record)
            .map_err(|error| PrivacyError::io(&self.path, &std::io::Error::other(error)))?;
        line.push('\n');
        if let Some(folder) = self.path.parent() {
            std::fs::create_dir_all(folder).map_err(|error| PrivacyError::io(folder, &error))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|error| PrivacyError::io(&self.path, &error))?;
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|error| PrivacyError::io(&self.path, &error))
    }

    /// Every record, oldest first (an empty list when there is no file yet).
    ///
    /// # Errors
    /// When the file cannot be read, or a line does not parse (naming the line).
    pub fn read(&self) -> Result<Vec<RequestRecord>, PrivacyError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(PrivacyError::io(&self.path, &error)),
        };
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(number, line)| {
                serde_json::from_str(line).map_err(|error| PrivacyError::Parse {
                    path: format!("{}:{}", self.path.display(), number + 1),
                    message: error.to_string(),
                })
            })
            .collect()
    }
}
