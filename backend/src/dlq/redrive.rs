//! Redrive: deliver dead-lettered events again, from the local DLQ or from a backup file.
//!
//! Bodies read: DLQ messages (`{"v": 1, …}`), Lambda's own async-invoke DLQ messages (the raw
//! invoke payload `{"destination": "…", "events": […]}`), and a bare JSON array of envelopes
//! (with `--destination`). Each message gets one delivery attempt per batch; when only some of
//! its events are delivered, the rest stay in the DLQ with `attempts` raised. Messages redriven
//! from a file that still fail are written to the local DLQ, so nothing is lost. Redrive is
//! unordered.
//!
//! Events the suppression list drops (their user was deleted, or is suppressed) are not
//! redriven, so a backup file cannot bring back what a privacy deletion removed; a DLQ message
//! left with no other event is deleted.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::backup::BackupLine;
use super::local::DeadLetterQueue;
use super::message::{DeadLetterError, DeadLetterMessage, MESSAGE_VERSION};
use crate::connectors::{Connector, Delivery, Failure, OutgoingEvent};
use crate::privacy::SuppressionIndex;

/// A destination redrive can deliver to.
#[derive(Clone)]
pub struct RedriveTarget {
    /// Its connector.
    pub connector: Arc<dyn Connector>,
    /// Events per delivery.
    pub batch_size: usize,
}

/// What a redrive did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RedriveReport {
    /// Messages looked at.
    pub messages: usize,
    /// Events delivered.
    pub delivered: usize,
    /// Events that failed again (kept in the DLQ).
    pub failed: usize,
    /// Messages left in (or written to) the DLQ.
    pub kept: usize,
    /// Messages that could not be read or have no known destination (left where they are).
    pub skipped: usize,
    /// Events not redriven because their user was deleted or is suppressed.
    pub privacy_dropped: usize,
    /// One line per message, for the person running it.
    pub lines: Vec<String>,
}

impl RedriveReport {
    /// Notes what a dry run would redrive of `message`.
    pub fn would_redrive(&mut self, label: &str, message: &DeadLetterMessage, events: usize) {
        self.lines.push(format!(
            "{label}: would redrive {events} events to {} (attempts so far: {})",
            message.destination, message.attempts
        ));
    }

    /// Counts one redrive attempt of a message: `sent` events, `remaining` of them not
    /// delivered (the message is then kept).
    pub fn count_attempt(&mut self, sent: usize, remaining: usize) {
        self.delivered += sent - remaining;
        self.failed += remaining;
        if remaining > 0 {
            self.kept += 1;
        }
    }
}

/// Where the messages come from.
pub enum RedriveSource<'a> {
    /// The local DLQ.
    Queue,
    /// Lines of a backup file.
    File(&'a [Result<BackupLine, String>]),
}

/// Redrives every message (of `destination`, when given).
///
/// # Errors
/// When the DLQ cannot be read or written.
pub async fn redrive(
    dlq: &DeadLetterQueue,
    targets: &HashMap<String, RedriveTarget>,
    source: RedriveSource<'_>,
    destination: Option<&str>,
    dry_run: bool,
    privacy: &SuppressionIndex,
) -> Result<RedriveReport, super::local::DlqError> {
    let mut report = RedriveReport::default();
    let entries: Vec<(Option<i64>, Result<DeadLetterMessage, String>)> = match source {
        RedriveSource::Queue => dlq
            .list(destination)?
            .into_iter()
            .map(|entry| match entry {
                Ok(stored) => (Some(stored.id), Ok(stored.message)),
                Err(unreadable) => (Some(unreadable.id), Err(unreadable.error)),
            })
            .collect(),
        RedriveSource::File(lines) => lines
            .iter()
            .map(|line| {
                (
                    None,
                    line.clone()
                        .and_then(|line| parse_body(&line.body, destination)),
                )
            })
            .collect(),
    };
    for (id, message) in entries {
        report.messages += 1;
        let label = id.map_or_else(
            || format!("line {}", report.messages),
            |id| format!("message {id}"),
        );
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                report.skipped += 1;
                report.lines.push(format!("{label}: skipped: {error}"));
                continue;
            }
        };
        if destination.is_some_and(|wanted| wanted != message.destination) {
            report.messages -= 1;
            continue;
        }
        let Some(target) = targets.get(&message.destination) else {
            report.skipped += 1;
            report.lines.push(format!(
                "{label}: skipped: destination {:?} is not configured",
                message.destination
            ));
            continue;
        };
        let events = events_to_redrive(&message, privacy, &label, &mut report);
        if events.is_empty() {
            if let (Some(id), false) = (id, dry_run) {
                dlq.delete(id)?;
            }
            continue;
        }
        if dry_run {
            report.would_redrive(&label, &message, events.len());
            continue;
        }
        let (remaining, failure) = deliver_once(target, &events).await;
        let delivered = events.len() - remaining.len();
        report.count_attempt(events.len(), remaining.len());
        match (remaining.is_empty(), id) {
            (true, Some(id)) => dlq.delete(id)?,
            (true, None) => {}
            (false, id) => {
                let kept = still_dead_lettered(&message, &remaining, failure);
                match id {
                    Some(id) => dlq.replace(id, &kept)?,
                    None => {
                        dlq.push(&kept)?;
                    }
                }
            }
        }
        report.lines.push(format!(
            "{label}: {delivered} of {} events delivered to {}{}",
            events.len(),
            message.destination,
            if remaining.is_empty() {
                String::new()
            } else {
                format!("; {} kept in the DLQ", remaining.len())
            }
        ));
    }
    Ok(report)
}

/// One attempt per batch; returns the events not delivered and the last failure.
pub async fn deliver_once(
    target: &RedriveTarget,
    events: &[OutgoingEvent],
) -> (Vec<OutgoingEvent>, Option<Failure>) {
    let mut remaining = Vec::new();
    let mut last_failure = None;
    for batch in events.chunks(target.batch_size.max(1)) {
        match target.connector.deliver(batch).await {
            Delivery::Delivered => {}
            Delivery::Failed(failure) => {
                remaining.extend_from_slice(batch);
                last_failure = Some(failure);
            }
            Delivery::Partial(failures) => {
                for (index, failure) in failures {
                    if let Some(event) = batch.get(index) {
                        remaining.push(event.clone());
                        last_failure = Some(failure);
                    }
                }
            }
        }
    }
    (remaining, last_failure)
}

/// What stays dead-lettered after a redrive attempt: the events still not delivered, with the
/// attempt counted and its failure (a generic retryable one when none was given).
pub fn still_dead_lettered(
    message: &DeadLetterMessage,
    remaining: &[OutgoingEvent],
    failure: Option<Failure>,
) -> DeadLetterMessage {
    let failure = failure.unwrap_or_else(|| Failure::retryable("not delivered"));
    DeadLetterMessage {
        v: MESSAGE_VERSION,
        destination: message.destination.clone(),
        events: remaining
            .iter()
            .filter_map(|event| RawValue::from_string(event.json.to_string()).ok())
            .collect(),
        error: DeadLetterError::from(&failure),
        attempts: message.attempts + 1,
        first_failed_at: message.first_failed_at.clone(),
        last_failed_at: crate::clock::now_rfc3339(),
    }
}

#[derive(Deserialize)]
struct InvokePayload {
    #[serde(default)]
    destination: Option<String>,
    events: Vec<Box<RawValue>>,
}

/// The message's events that may be redriven: those of deleted or suppressed users are left
/// out, counted in `report` and named in a line under `label`.
pub fn events_to_redrive(
    message: &DeadLetterMessage,
    privacy: &SuppressionIndex,
    label: &str,
    report: &mut RedriveReport,
) -> Vec<OutgoingEvent> {
    let mut events = message.outgoing_events();
    let before = events.len();
    events.retain(|event| privacy.router_drops_json(&event.json).is_none());
    let dropped = before - events.len();
    report.privacy_dropped += dropped;
    if dropped > 0 {
        report.lines.push(format!(
            "{label}: {dropped} events of deleted or suppressed users not redriven"
        ));
    }
    events
}

/// Reads a message body of any of the accepted shapes.
///
/// # Errors
/// A message saying why the body is unusable.
pub fn parse_body(body: &str, destination: Option<&str>) -> Result<DeadLetterMessage, String> {
    if let Ok(message) = serde_json::from_str::<DeadLetterMessage>(body) {
        return Ok(message);
    }
    let now = crate::clock::now_rfc3339();
    let wrap = |destination: String, events: Vec<Box<RawValue>>| DeadLetterMessage {
        v: MESSAGE_VERSION,
        destination,
        events,
        error: DeadLetterError {
            class: "retryable".into(),
            status: None,
            message: "from a Lambda dead-letter queue".into(),
        },
        attempts: 0,
        first_failed_at: now.clone(),
        last_failed_at: now.clone(),
    };
    if let Ok(payload) = serde_json::from_str::<InvokePayload>(body) {
        let destination = payload
            .destination
            .or_else(|| destination.map(str::to_owned))
            .ok_or("the payload names no destination: pass --destination")?;
        return Ok(wrap(destination, payload.events));
    }
    if let Ok(events) = serde_json::from_str::<Vec<Box<RawValue>>>(body) {
        let destination = destination.ok_or("a bare array of events needs --destination")?;
        return Ok(wrap(destination.to_owned(), events));
    }
    Err("not a DLQ message, a Lambda invoke payload, or an array of events".into())
}
