//! The router function: a batch of Kinesis records in, each destination's events out, and a
//! partial batch response (`batchItemFailures`) naming only the records that failed for a
//! reason that may pass. See the module invariants of [`super`].

use std::collections::{BTreeSet, HashMap};

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;

use super::destinations::Destinations;
use super::records::{self, PoisonRecord, StreamEvent};
use super::rules_source::S3Rules;
use super::settings::{self, AwsError};
use super::sqs_dlq::SqsDeadLetterQueue;
use super::suppression_source::S3SuppressionList;
use crate::connectors::{Failure, FailureClass, OutgoingEvent};
use crate::dlq::DeadLetterMessage;
use crate::privacy::suppression::DropReason;
use crate::routing::RoutingRules;

/// What one batch did, for the log line and the tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RouteReport {
    /// Events read from the records.
    pub events: usize,
    /// (event, destination) pairs accepted by a destination.
    pub sent: usize,
    /// Events no rule enables.
    pub unrouted: usize,
    /// Events dropped because their user is suppressed (the suppression list's `suppressed`).
    pub suppressed: usize,
    /// Events dropped because their user's events were deleted (its `deleted`).
    pub deleted: usize,
    /// Poison records written to the router's DLQ.
    pub poison: usize,
    /// (event, destination) pairs a destination refused for good, written to the router's DLQ.
    pub dead_lettered: usize,
    /// Requests to destinations.
    pub requests: usize,
    /// Sequence numbers reported as failed, in record order.
    pub failed_sequence_numbers: Vec<String>,
}

/// The router, with its clients.
#[derive(Debug)]
pub struct RouterFunction {
    rules: S3Rules,
    suppressions: Option<S3SuppressionList>,
    destinations: Destinations,
    dlq: SqsDeadLetterQueue,
}

impl RouterFunction {
    /// A router reading rules from `rules`, sending through `destinations`, dead-lettering to
    /// `dlq`.
    pub fn new(rules: S3Rules, destinations: Destinations, dlq: SqsDeadLetterQueue) -> Self {
        Self {
            rules,
            suppressions: None,
            destinations,
            dlq,
        }
    }

    /// The router, also dropping the events of users `suppressions` lists.
    #[must_use]
    pub fn with_suppressions(mut self, suppressions: S3SuppressionList) -> Self {
        self.suppressions = Some(suppressions);
        self
    }

    /// Built from the environment (`TRIBUTARY_RULES_BUCKET`, `TRIBUTARY_RULES_KEY`,
    /// `TRIBUTARY_SUPPRESSIONS_KEY`, `TRIBUTARY_ROUTER_DLQ_URL`); the suppression list is in the
    /// rules bucket.
    ///
    /// # Errors
    /// [`AwsError::Config`] naming a missing variable.
    pub fn from_env(sdk_config: &aws_config::SdkConfig) -> Result<Self, AwsError> {
        let bucket = settings::required(settings::RULES_BUCKET_ENV)?;
        let key =
            settings::optional(settings::RULES_KEY_ENV).unwrap_or_else(|| "rules.json".into());
        let suppressions_key = settings::optional(settings::SUPPRESSIONS_KEY_ENV)
            .unwrap_or_else(|| settings::DEFAULT_SUPPRESSIONS_KEY.into());
        let dlq_url = settings::required(settings::ROUTER_DLQ_URL_ENV)?;
        Ok(Self::new(
            S3Rules::new(s3_client(sdk_config), bucket.clone(), key),
            Destinations::new(
                aws_sdk_lambda::Client::new(sdk_config),
                aws_sdk_sqs::Client::new(sdk_config),
            ),
            SqsDeadLetterQueue::new(aws_sdk_sqs::Client::new(sdk_config), dlq_url),
        )
        .with_suppressions(S3SuppressionList::new(
            s3_client(sdk_config),
            bucket,
            suppressions_key,
        )))
    }

    /// Routes one batch; the answer for Lambda.
    ///
    /// # Errors
    /// When no rules could ever be loaded (the whole batch is retried).
    pub async fn handle(&self, event: KinesisEvent) -> Result<KinesisEventResponse, AwsError> {
        let report = self.route(&event).await?;
        tracing::info!(
            message = "batch routed",
            records = event.records.len(),
            events = report.events,
            sent = report.sent,
            unrouted = report.unrouted,
            suppressed = report.suppressed,
            deleted = report.deleted,
            poison = report.poison,
            dead_lettered = report.dead_lettered,
            requests = report.requests,
            failed_records = report.failed_sequence_numbers.len()
        );
        let mut response = KinesisEventResponse::default();
        response.set_failures(report.failed_sequence_numbers);
        Ok(response)
    }

    /// Routes one batch and says what happened.
    ///
    /// # Errors
    /// As [`RouterFunction::handle`], and when no suppression list could ever be loaded (a
    /// malformed object: delivering its users' events is not an option).
    pub async fn route(&self, event: &KinesisEvent) -> Result<RouteReport, AwsError> {
        let rules = self.rules.current().await?;
        let suppressions = match &self.suppressions {
            Some(list) => Some(list.current().await?),
            None => None,
        };
        let mut report = RouteReport::default();
        let mut failed: BTreeSet<String> = BTreeSet::new();
        let mut events: Vec<StreamEvent> = Vec::new();
        let mut poison: Vec<PoisonRecord> = Vec::new();
        for record in &event.records {
            let read = records::read(record);
            events.extend(read.events);
            poison.extend(read.poison);
        }
        report.events = events.len();
        if let Some(index) = suppressions.filter(|index| !index.is_empty()) {
            events.retain(|event| match index.router_drops_json(&event.event.json) {
                None => true,
                Some(DropReason::Suppressed) => {
                    report.suppressed += 1;
                    false
                }
                Some(DropReason::Deleted) => {
                    report.deleted += 1;
                    false
                }
            });
            if report.suppressed + report.deleted > 0 {
                tracing::info!(
                    message = "events of suppressed or deleted users dropped",
                    suppressed = report.suppressed,
                    deleted = report.deleted
                );
            }
        }

        for record in &poison {
            match self.dlq.write_poison(record).await {
                Ok(()) => {
                    tracing::warn!(
                        message = "poison record dead-lettered",
                        shard_id = %record.shard_id,
                        sequence_number = %record.sequence_number,
                        error = %record.error
                    );
                    report.poison += 1;
                }
                Err(error) => {
                    tracing::error!(
                        message = "cannot dead-letter a poison record; reporting it",
                        sequence_number = %record.sequence_number,
                        %error
                    );
                    failed.insert(record.sequence_number.clone());
                }
            }
        }

        for (destination, wanted) in by_destination(&rules, &events, &mut report) {
            let arn = rules.destination_arn(destination).unwrap_or_default();
            let outgoing: Vec<&OutgoingEvent> = wanted.iter().map(|event| &event.event).collect();
            let outcome = self.destinations.send(destination, arn, &outgoing).await;
            report.requests += outcome.requests;
            let failed_count: usize = outcome.failures.iter().map(|(i, _)| i.len()).sum();
            report.sent += wanted.len() - failed_count;
            for (indexes, failure) in outcome.failures {
                let concerned: Vec<&StreamEvent> = indexes
                    .iter()
                    .filter_map(|&i| wanted.get(i).copied())
                    .collect();
                if failure.class == FailureClass::Permanent
                    && self.dead_letter(destination, &concerned, &failure).await
                {
                    report.dead_lettered += concerned.len();
                    continue;
                }
                tracing::warn!(
                    message = "destination failed; reporting its records for a retry",
                    destination,
                    events = concerned.len(),
                    error = %failure.message
                );
                failed.extend(concerned.iter().map(|event| event.sequence_number.clone()));
            }
        }

        // In record order, as Lambda checkpoints at the lowest reported sequence number.
        report.failed_sequence_numbers = event
            .records
            .iter()
            .map(|record| record.kinesis.sequence_number.clone())
            .filter(|sequence| failed.remove(sequence))
            .collect();
        Ok(report)
    }

    /// Writes a refused batch to the router's DLQ; `false` when that failed too.
    async fn dead_letter(
        &self,
        destination: &str,
        events: &[&StreamEvent],
        failure: &Failure,
    ) -> bool {
        let now = crate::clock::now_rfc3339();
        let outgoing: Vec<OutgoingEvent> = events.iter().map(|event| event.event.clone()).collect();
        let message = DeadLetterMessage::new(destination, &outgoing, failure, 1, now.clone(), now);
        match self.dlq.write_message(&message).await {
            Ok(()) => {
                tracing::warn!(
                    message = "destination refused events; dead-lettered",
                    destination,
                    events = events.len(),
                    error = %failure.message
                );
                true
            }
            Err(error) => {
                tracing::error!(message = "cannot write to the router's DLQ", %error);
                false
            }
        }
    }
}

/// Each destination's events, in first-rule order; counts the unrouted ones.
fn by_destination<'a>(
    rules: &'a RoutingRules,
    events: &'a [StreamEvent],
    report: &mut RouteReport,
) -> Vec<(&'a str, Vec<&'a StreamEvent>)> {
    let mut groups: Vec<(&str, Vec<&StreamEvent>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for event in events {
        let destinations = rules.destinations_for(&event.event.name);
        if destinations.is_empty() {
            report.unrouted += 1;
        }
        for destination in destinations {
            let at = *index.entry(destination).or_insert_with(|| {
                groups.push((destination, Vec::new()));
                groups.len() - 1
            });
            groups[at].1.push(event);
        }
    }
    groups
}

/// An S3 client; path-style when `TRIBUTARY_S3_PATH_STYLE=1` (moto, MinIO).
pub fn s3_client(sdk_config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let path_style = settings::optional("TRIBUTARY_S3_PATH_STYLE").is_some_and(|v| v == "1");
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk_config)
            .force_path_style(path_style)
            .build(),
    )
}
