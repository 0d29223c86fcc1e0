//! Deleting, suppressing and unsuppressing: what `tributary privacy …` and the admin endpoints
//! both do, in one place.
//!
//! A deletion, in order: the subjects go on the suppression list's `deleted` section (and its
//! `suppressed` section with `suppress`), so running delivery workers drop their events from
//! then on; after `settle` (for a `serve` in another process to notice the file) the subjects'
//! events are removed from the log, from DLQ messages and from every destination that can
//! delete; the request and what each store did are appended to the audit trail.
//!
//! The list is the data dir's file, or another [`SuppressionStore`] (AWS mode's S3 object, with
//! [`PrivacyRequests::with_remote_list`]); there the log and the DLQ are a Kinesis stream and SQS
//! queues, which cannot be edited: the router drops the subjects' events still in the stream
//! (the `deleted` entry), and `dlq … --queue … redrive` leaves them out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tributary_core::envelope::{EventId, MAX_ANONYMOUS_ID_CHARS, MAX_USER_ID_CHARS};

use super::PrivacyError;
use super::audit::{Action, AuditTrail, ErasureReport, RequestRecord, StoreOutcome};
use super::store::{ListChange, SuppressionStore};
use super::suppression::{
    Deletion, LiveSuppressions, Subject, SubjectSet, SuppressionFile, SuppressionList,
};
use crate::config::Config;
use crate::connectors::{self, Connector, Erasure};
use crate::dlq::DeadLetterQueue;
use crate::log::{LOG_FILE, LogReader, maintenance};

/// A destination as the privacy requests see it.
#[derive(Clone)]
pub enum ErasureTarget {
    /// A store Tributary can delete from.
    Connector(Arc<dyn Connector>),
    /// A store that keeps events elsewhere: where to delete instead.
    Elsewhere(String),
    /// A store that could not be reached: why.
    Unavailable(String),
}

/// Carries out privacy requests against one data dir and its destinations.
pub struct PrivacyRequests {
    data_dir: PathBuf,
    store: Arc<dyn SuppressionStore>,
    local_stores: bool,
    live: Option<Arc<LiveSuppressions>>,
    audit: AuditTrail,
    targets: BTreeMap<String, ErasureTarget>,
    settle: Duration,
}

impl PrivacyRequests {
    /// Requests against `data_dir` and these destinations. `live` is the running process's own
    /// view of the list (updated at once); `settle` is how long a deletion waits between
    /// listing the subjects and cleaning the stores.
    pub fn new(
        data_dir: &Path,
        targets: BTreeMap<String, ErasureTarget>,
        live: Option<Arc<LiveSuppressions>>,
        settle: Duration,
    ) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            store: Arc::new(SuppressionFile::in_data_dir(data_dir)),
            local_stores: true,
            live,
            audit: AuditTrail::in_data_dir(data_dir),
            targets,
            settle,
        }
    }

    /// The destinations of `config` for deletions: their connectors where Tributary can delete
    /// (built here), where to delete otherwise.
    pub fn targets_of(config: &Config) -> BTreeMap<String, ErasureTarget> {
        config
            .destinations
            .iter()
            .map(|(name, destination)| {
                let target = match connectors::erased_elsewhere(&destination.kind) {
                    Some(elsewhere) => ErasureTarget::Elsewhere(elsewhere.to_owned()),
                    None => match connectors::build(name, destination) {
                        Ok(connector) => ErasureTarget::Connector(connector),
                        Err(error) => ErasureTarget::Unavailable(error.to_string()),
                    },
                };
                (name.clone(), target)
            })
            .collect()
    }

    /// Requests whose list is kept in `store` (AWS mode's S3 object) instead of the data dir:
    /// deletions then leave the data dir's log and DLQ alone (AWS mode has neither) and clean
    /// only the destinations; the audit trail stays in the data dir.
    #[must_use]
    pub fn with_remote_list(mut self, store: Arc<dyn SuppressionStore>) -> Self {
        self.store = store;
        self.local_stores = false;
        self
    }

    /// Where the list is kept.
    pub fn list_location(&self) -> String {
        self.store.location()
    }

    /// The suppression list now.
    ///
    /// # Errors
    /// When the list cannot be read.
    pub async fn list(&self) -> Result<SuppressionList, PrivacyError> {
        self.store.load().await
    }

    /// The audit trail, oldest first.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn history(&self) -> Result<Vec<RequestRecord>, PrivacyError> {
        self.audit.read()
    }

    /// Deletes the subjects' events everywhere (and suppresses them when `suppress`).
    ///
    /// # Errors
    /// An unusable request, or when the list or the audit trail cannot be written. A store
    /// that fails is reported in the record, not as an error.
    pub async fn delete(
        &self,
        subjects: Vec<Subject>,
        suppress: bool,
        reason: Option<String>,
        via: &str,
    ) -> Result<RequestRecord, PrivacyError> {
        check_subjects(&subjects)?;
        let requested_at = now();
        let id = new_request_id();
        let list = {
            let subjects = subjects.clone();
            let reason = reason.clone();
            let id = id.clone();
            self.update_list(Arc::new(move |list: &mut SuppressionList| {
                for subject in &subjects {
                    if suppress {
                        list.suppress(subject.clone(), requested_at, reason.clone());
                    }
                    list.deleted.push(Deletion {
                        subject: subject.clone(),
                        received_before: requested_at,
                        request: Some(id.clone()),
                    });
                }
            }))
            .await?
        };
        if let Some(live) = &self.live {
            live.set(&list);
        }
        if !self.settle.is_zero() {
            tokio::time::sleep(self.settle).await;
        }
        let erasure = self.erase(&SubjectSet::new(&subjects)).await;
        let record = RequestRecord {
            id,
            action: Action::Delete,
            subjects,
            via: via.to_owned(),
            reason,
            requested_at: rfc3339(requested_at),
            completed_at: rfc3339(now()),
            erasure: Some(erasure),
        };
        self.record(&record).await?;
        Ok(record)
    }

    /// Drops the subjects' future events (already suppressed subjects keep their `since`).
    ///
    /// # Errors
    /// As [`PrivacyRequests::delete`].
    pub async fn suppress(
        &self,
        subjects: Vec<Subject>,
        reason: Option<String>,
        via: &str,
    ) -> Result<RequestRecord, PrivacyError> {
        self.change_suppression(Action::Suppress, subjects, reason, via)
            .await
    }

    /// Collects the subjects' events again.
    ///
    /// # Errors
    /// As [`PrivacyRequests::delete`].
    pub async fn unsuppress(
        &self,
        subjects: Vec<Subject>,
        reason: Option<String>,
        via: &str,
    ) -> Result<RequestRecord, PrivacyError> {
        self.change_suppression(Action::Unsuppress, subjects, reason, via)
            .await
    }

    async fn change_suppression(
        &self,
        action: Action,
        subjects: Vec<Subject>,
        reason: Option<String>,
        via: &str,
    ) -> Result<RequestRecord, PrivacyError> {
        check_subjects(&subjects)?;
        let requested_at = now();
        let list = {
            let subjects = subjects.clone();
            let reason = reason.clone();
            self.update_list(Arc::new(move |list: &mut SuppressionList| {
                for subject in &subjects {
                    match action {
                        Action::Unsuppress => {
                            list.unsuppress(subject);
                        }
                        _ => {
                            list.suppress(subject.clone(), requested_at, reason.clone());
                        }
                    }
                }
            }))
            .await?
        };
        if let Some(live) = &self.live {
            live.set(&list);
        }
        let record = RequestRecord {
            id: new_request_id(),
            action,
            subjects,
            via: via.to_owned(),
            reason,
            requested_at: rfc3339(requested_at),
            completed_at: rfc3339(now()),
            erasure: None,
        };
        self.record(&record).await?;
        Ok(record)
    }

    async fn update_list(&self, change: ListChange) -> Result<SuppressionList, PrivacyError> {
        self.store.update(change).await
    }

    async fn record(&self, record: &RequestRecord) -> Result<(), PrivacyError> {
        let audit = self.audit.clone();
        let record = record.clone();
        tokio::task::spawn_blocking(move || audit.append(&record))
            .await
            .map_err(|error| PrivacyError::Invalid(format!("the audit task failed: {error}")))?
    }

    /// Removes the subjects' events from the log, the DLQ and every destination.
    async fn erase(&self, subjects: &SubjectSet) -> ErasureReport {
        let mut report = ErasureReport::default();
        if self.local_stores {
            self.erase_log_and_dlq(subjects, &mut report).await;
        }
        for (name, target) in &self.targets {
            let outcome = match target {
                ErasureTarget::Connector(connector) => match connector.erase(subjects).await {
                    Erasure::Erased(events) => StoreOutcome::Erased { events },
                    Erasure::Unsupported(reason) => StoreOutcome::Unsupported { reason },
                    Erasure::Failed(error) => StoreOutcome::Failed { error },
                },
                ErasureTarget::Elsewhere(reason) => StoreOutcome::Unsupported {
                    reason: reason.clone(),
                },
                ErasureTarget::Unavailable(error) => StoreOutcome::Failed {
                    error: error.clone(),
                },
            };
            report.destinations.insert(name.clone(), outcome);
        }
        report
    }

    /// Removes the subjects' events from the data dir's log and DLQ.
    async fn erase_log_and_dlq(&self, subjects: &SubjectSet, report: &mut ErasureReport) {
        let data_dir = self.data_dir.clone();
        let set = subjects.clone();
        let local = tokio::task::spawn_blocking(move || {
            let log = LogReader::open(&data_dir.join(LOG_FILE), None)
                .and_then(|reader| {
                    maintenance::erase_subjects(&reader, &set.user_ids(), &set.anonymous_ids())
                })
                .map_err(|error| error.to_string());
            let dlq = DeadLetterQueue::open(&data_dir)
                .and_then(|dlq| dlq.erase_events(|json| set.matches_json(json)))
                .map_err(|error| error.to_string());
            (log, dlq)
        })
        .await;
        match local {
            Ok((log, dlq)) => {
                match log {
                    Ok(count) => report.log = count,
                    Err(error) => report.errors.push(format!("log: {error}")),
                }
                match dlq {
                    Ok((events, messages)) => {
                        report.dlq_events = events;
                        report.dlq_messages = messages;
                    }
                    Err(error) => report.errors.push(format!("dlq: {error}")),
                }
            }
            Err(error) => report
                .errors
                .push(format!("the log and DLQ task failed: {error}")),
        }
    }
}

/// At least one subject; ids as the envelope allows them.
fn check_subjects(subjects: &[Subject]) -> Result<(), PrivacyError> {
    if subjects.is_empty() {
        return Err(PrivacyError::Invalid(
            "name at least one user_id or anonymous_id".into(),
        ));
    }
    for subject in subjects {
        let (field, id, limit) = match subject {
            Subject::UserId(id) => ("user_id", id, MAX_USER_ID_CHARS),
            Subject::AnonymousId(id) => ("anonymous_id", id, MAX_ANONYMOUS_ID_CHARS),
        };
        if id.is_empty() {
            return Err(PrivacyError::Invalid(format!("{field}: must not be empty")));
        }
        if id.chars().count() > limit {
            return Err(PrivacyError::Invalid(format!(
                "{field}: is over {limit} characters, so no event can have it"
            )));
        }
    }
    Ok(())
}

/// Now, to the millisecond (as every other time Tributary writes).
fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_millisecond(now.millisecond()).unwrap_or(now)
}

fn new_request_id() -> String {
    EventId::new_v7(crate::clock::now(), &mut fastrand::Rng::new()).to_string()
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
