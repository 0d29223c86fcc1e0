//! `tributary dlq … --queue URL`: the DLQ commands against an SQS queue.
//!
//! - `list`: prints the messages, then makes them visible again.
//! - `backup --out FILE [--purge]`: appends one line per message (body and attributes, the
//!   article's script's shape); a message is deleted (`--purge`) only after its line is written
//!   and synced, and a message whose line could not be written stays in the queue. Without
//!   `--purge` every message is made visible again at the end.
//! - `redrive [--from FILE]`: ReceiveMessage → deliver through the configured connectors →
//!   DeleteMessage; what fails again is sent back to the queue as a new message with `attempts`
//!   raised before the original is deleted (SQS messages cannot be changed). Messages it cannot
//!   read or has no destination for are made visible again. Events of deleted or suppressed
//!   users are left out (a message left with no other event is deleted), as in local mode.
//! - `purge`: `PurgeQueue`, or with `--destination` only that destination's messages.
//!
//! # Invariants
//! - Every message is received at most once per run: received messages stay invisible (for
//!   [`VISIBILITY`]) until the run releases or deletes them, and messages the run itself sends
//!   are recognised by id and left alone.
//! - Nothing is deleted before what replaces it (a backup line, a delivery, a re-sent message)
//!   is durable.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageAttributeValue,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::settings::{self, AwsError};
use crate::dlq::backup::{self, BackupLine};
use crate::dlq::message::Attribute;
use crate::dlq::redrive::{
    RedriveReport, RedriveTarget, deliver_once, events_to_redrive, parse_body, still_dead_lettered,
};
use crate::privacy::SuppressionIndex;

/// How long a received message stays invisible to others during a run.
pub const VISIBILITY: Duration = Duration::from_secs(300);

/// One SQS queue, as the DLQ commands see it.
#[derive(Debug, Clone)]
pub struct QueueTool {
    client: aws_sdk_sqs::Client,
    url: String,
    progress: bool,
}

/// A message as received: its id, receipt handle, body and attributes.
#[derive(Debug, Clone)]
pub struct Received {
    /// SQS's message id.
    pub id: String,
    /// The receipt handle (to delete or release it).
    pub receipt: String,
    /// The body.
    pub body: String,
    /// Its message attributes.
    pub attributes: std::collections::BTreeMap<String, Attribute>,
}

/// What `backup` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// Lines written.
    pub written: usize,
    /// Messages deleted (`--purge`).
    pub deleted: usize,
}

impl QueueTool {
    /// The queue at `url`; `progress` draws a progress bar on stderr when it is a terminal.
    pub fn new(client: aws_sdk_sqs::Client, url: String, progress: bool) -> Self {
        Self {
            client,
            url,
            progress,
        }
    }

    fn bar(&self, verb: &str) -> ProgressBar {
        let bar = if self.progress {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {pos} messages ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(verb.to_owned());
        bar
    }

    /// Receives up to 10 messages (waiting up to a second, so an empty answer means empty).
    async fn receive(&self) -> Result<Vec<Received>, AwsError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .visibility_timeout(VISIBILITY.as_secs() as i32)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|error| settings::call_error("sqs ReceiveMessage", &error))?;
        Ok(output.messages().iter().map(received).collect())
    }

    /// Every message now in the queue, each once (they stay invisible until released).
    async fn receive_all(&self, seen: &mut HashSet<String>) -> Result<Vec<Received>, AwsError> {
        let mut all = Vec::new();
        loop {
            let batch = self.receive().await?;
            if batch.is_empty() {
                return Ok(all);
            }
            let mut new = 0;
            for message in batch {
                if seen.insert(message.id.clone()) {
                    new += 1;
                    all.push(message);
                }
            }
            if new == 0 {
                return Ok(all);
            }
        }
    }

    /// Makes messages visible again.
    ///
    /// # Errors
    /// When SQS refuses.
    pub async fn release(&self, messages: &[&Received]) -> Result<(), AwsError> {
        for chunk in messages.chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(index, message)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(&message.receipt)
                        .visibility_timeout(0)
                        .build()
                        .ok()
                })
                .collect();
            self.client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|error| {
                    settings::call_error("sqs ChangeMessageVisibilityBatch", &error)
                })?;
        }
        Ok(())
    }

    /// Deletes messages.
    ///
    /// # Errors
    /// When SQS refuses (some may be deleted then).
    pub async fn delete(&self, messages: &[&Received]) -> Result<(), AwsError> {
        for chunk in messages.chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(index, message)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(&message.receipt)
                        .build()
                        .ok()
                })
                .collect();
            let output = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|error| settings::call_error("sqs DeleteMessageBatch", &error))?;
            if let Some(failed) = output.failed().first() {
                return Err(AwsError::Call {
                    operation: "sqs DeleteMessageBatch".into(),
                    message: format!(
                        "{}: {}",
                        failed.code(),
                        failed.message().unwrap_or_default()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Sends a message with attributes; returns its id.
    async fn send(
        &self,
        body: String,
        attributes: &std::collections::BTreeMap<String, Attribute>,
    ) -> Result<String, AwsError> {
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body);
        for (name, attribute) in attributes {
            if let Ok(value) = MessageAttributeValue::builder()
                .data_type(&attribute.data_type)
                .string_value(&attribute.string_value)
                .build()
            {
                request = request.message_attributes(name, value);
            }
        }
        let output = request
            .send()
            .await
            .map_err(|error| settings::call_error("sqs SendMessage", &error))?;
        Ok(output.message_id().unwrap_or_default().to_owned())
    }

    /// Every message (of `destination`, when given), released again afterwards.
    ///
    /// # Errors
    /// When SQS fails.
    pub async fn list(&self, destination: Option<&str>) -> Result<Vec<Received>, AwsError> {
        let mut seen = HashSet::new();
        let all = self.receive_all(&mut seen).await?;
        self.release(&all.iter().collect::<Vec<_>>()).await?;
        Ok(all
            .into_iter()
            .filter(|message| matches_destination(message, destination))
            .collect())
    }

    /// Appends every message (of `destination`) to `out`; see the module docs.
    ///
    /// # Errors
    /// When SQS fails or the file cannot be written (nothing unwritten is deleted).
    pub async fn backup(
        &self,
        out: &Path,
        purge: bool,
        destination: Option<&str>,
    ) -> Result<BackupReport, AwsError> {
        let bar = self.bar("backing up");
        let mut report = BackupReport::default();
        let mut seen = HashSet::new();
        let mut to_release: Vec<Received> = Vec::new();
        let result: Result<(), AwsError> = async {
            loop {
                let batch = self.receive().await?;
                let fresh: Vec<Received> = batch
                    .into_iter()
                    .filter(|message| seen.insert(message.id.clone()))
                    .collect();
                if fresh.is_empty() {
                    return Ok(());
                }
                let (wanted, others): (Vec<Received>, Vec<Received>) = fresh
                    .into_iter()
                    .partition(|message| matches_destination(message, destination));
                to_release.extend(others);
                let lines: Vec<BackupLine> = wanted
                    .iter()
                    .map(|message| BackupLine {
                        body: message.body.clone(),
                        attributes: message.attributes.clone(),
                    })
                    .collect();
                if let Err(error) = backup::append(out, &lines) {
                    to_release.extend(wanted);
                    return Err(AwsError::Config(format!("{}: {error}", out.display())));
                }
                report.written += lines.len();
                bar.inc(lines.len() as u64);
                if purge {
                    self.delete(&wanted.iter().collect::<Vec<_>>()).await?;
                    report.deleted += wanted.len();
                } else {
                    to_release.extend(wanted);
                }
            }
        }
        .await;
        bar.finish_and_clear();
        self.release(&to_release.iter().collect::<Vec<_>>()).await?;
        result.map(|()| report)
    }

    /// Redrives every message of the queue (or of `from`'s lines) through `targets`; what
    /// fails again goes (back) to the queue with `attempts` raised.
    ///
    /// # Errors
    /// When SQS fails.
    pub async fn redrive(
        &self,
        targets: &HashMap<String, RedriveTarget>,
        from: Option<&[Result<BackupLine, String>]>,
        destination: Option<&str>,
        dry_run: bool,
        privacy: &SuppressionIndex,
    ) -> Result<RedriveReport, AwsError> {
        let bar = self.bar("redriving");
        let mut report = RedriveReport::default();
        let mut seen = HashSet::new();
        let mut release: Vec<Received> = Vec::new();
        let entries: Vec<(Option<Received>, Result<String, String>)> = match from {
            Some(lines) => lines
                .iter()
                .map(|line| (None, line.clone().map(|line| line.body)))
                .collect(),
            None => self
                .receive_all(&mut seen)
                .await?
                .into_iter()
                .map(|message| {
                    let body = message.body.clone();
                    (Some(message), Ok(body))
                })
                .collect(),
        };
        for (received, body) in entries {
            report.messages += 1;
            bar.inc(1);
            let label = received.as_ref().map_or_else(
                || format!("line {}", report.messages),
                |message| format!("message {}", message.id),
            );
            let message = match body.and_then(|body| parse_body(&body, destination)) {
                Ok(message) => message,
                Err(error) => {
                    report.skipped += 1;
                    report.lines.push(format!("{label}: skipped: {error}"));
                    release.extend(received);
                    continue;
                }
            };
            if destination.is_some_and(|wanted| wanted != message.destination) {
                report.messages -= 1;
                release.extend(received);
                continue;
            }
            let Some(target) = targets.get(&message.destination) else {
                report.skipped += 1;
                report.lines.push(format!(
                    "{label}: skipped: destination {:?} is not configured",
                    message.destination
                ));
                release.extend(received);
                continue;
            };
            let events = events_to_redrive(&message, privacy, &label, &mut report);
            if events.is_empty() {
                match (&received, dry_run) {
                    (Some(received), false) => self.delete(&[received]).await?,
                    _ => release.extend(received),
                }
                continue;
            }
            if dry_run {
                report.would_redrive(&label, &message, events.len());
                release.extend(received);
                continue;
            }
            let (remaining, failure) = deliver_once(target, &events).await;
            report.count_attempt(events.len(), remaining.len());
            if !remaining.is_empty() {
                let kept = still_dead_lettered(&message, &remaining, failure);
                for part in super::sqs_dlq::split(&kept) {
                    let id = self.send(part.to_json(), &part.attributes()).await?;
                    seen.insert(id);
                }
            }
            if let Some(received) = &received {
                self.delete(&[received]).await?;
            }
            report.lines.push(format!(
                "{label}: {} of {} events delivered to {}{}",
                events.len() - remaining.len(),
                events.len(),
                message.destination,
                if remaining.is_empty() {
                    String::new()
                } else {
                    format!("; {} kept in the queue", remaining.len())
                }
            ));
        }
        bar.finish_and_clear();
        self.release(&release.iter().collect::<Vec<_>>()).await?;
        Ok(report)
    }

    /// Deletes every message (`PurgeQueue`), or only `destination`'s; returns how many were
    /// deleted (`None` for `PurgeQueue`, which does not say).
    ///
    /// # Errors
    /// When SQS fails.
    pub async fn purge(&self, destination: Option<&str>) -> Result<Option<usize>, AwsError> {
        let Some(destination) = destination else {
            self.client
                .purge_queue()
                .queue_url(&self.url)
                .send()
                .await
                .map_err(|error| settings::call_error("sqs PurgeQueue", &error))?;
            return Ok(None);
        };
        let mut seen = HashSet::new();
        let all = self.receive_all(&mut seen).await?;
        let (matching, others): (Vec<&Received>, Vec<&Received>) = all
            .iter()
            .partition(|message| matches_destination(message, Some(destination)));
        self.delete(&matching).await?;
        self.release(&others).await?;
        Ok(Some(matching.len()))
    }
}

fn received(message: &Message) -> Received {
    Received {
        id: message.message_id().unwrap_or_default().to_owned(),
        receipt: message.receipt_handle().unwrap_or_default().to_owned(),
        body: message.body().unwrap_or_default().to_owned(),
        attributes: message
            .message_attributes()
            .map(|attributes| {
                attributes
                    .iter()
                    .map(|(name, value)| {
                        (
                            name.clone(),
                            Attribute {
                                data_type: value.data_type().to_owned(),
                                string_value: value.string_value().unwrap_or_default().to_owned(),
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Whether a message belongs to `destination` (by its attribute, else its body).
fn matches_destination(message: &Received, destination: Option<&str>) -> bool {
    let Some(destination) = destination else {
        return true;
    };
    if let Some(attribute) = message.attributes.get("destination") {
        return attribute.string_value == destination;
    }
    parse_body(&message.body, None).is_ok_and(|parsed| parsed.destination == destination)
}
