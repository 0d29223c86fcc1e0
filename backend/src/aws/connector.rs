//! The connector function: one binary, the destination chosen by configuration
//! (`TRIBUTARY_DESTINATION` names a `[destinations.NAME]` of the `tributary.toml` text in
//! `TRIBUTARY_CONNECTOR_CONFIG`). It takes the router's asynchronous-invoke payload
//! (`{"destination": …, "events": […]}`) and SQS events whose bodies are that payload (or a
//! DLQ message), delivers with the one retry rule within its time budget, and then writes the
//! DLQ message itself to its SQS DLQ (`TRIBUTARY_CONNECTOR_DLQ_URL`) and succeeds — so a DLQ
//! message has one shape whatever failed. Lambda's own DLQ stays as the last net for crashes.
//!
//! With `TRIBUTARY_SUPPRESSIONS_BUCKET` set, the suppression list there
//! (`TRIBUTARY_SUPPRESSIONS_KEY`, default `suppressions.json`) is checked at every invocation
//! and before every attempt, as local mode's delivery jobs do: events of users deleted or
//! suppressed while they waited in a queue or for a retry are not delivered.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use serde_json::{Value, json};

use super::settings::{self, AwsError};
use super::sqs_dlq::SqsDeadLetterQueue;
use super::suppression_source::S3SuppressionList;
use crate::config::{Config, ConfigSource, Destination};
use crate::connectors::{self, Connector, OutgoingEvent};
use crate::delivery::job::{self, JobContext, JobOutcome};
use crate::dlq::DeadLetterSink;
use crate::dlq::redrive::parse_body;
use crate::ops::metrics::Metrics;
use crate::privacy::{ConsentRequirement, LiveSuppressions};

/// Time kept back from the function's deadline for the DLQ write and the answer.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// The connector, with its destination and DLQ.
pub struct ConnectorFunction {
    destination: String,
    connector: Arc<dyn Connector>,
    settings: Destination,
    dlq: Arc<dyn DeadLetterSink>,
    metrics: Arc<Metrics>,
    suppressions: Option<S3SuppressionList>,
    live_suppressions: Arc<LiveSuppressions>,
}

impl std::fmt::Debug for ConnectorFunction {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ConnectorFunction")
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}

/// What one invocation did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConnectorReport {
    /// Events delivered.
    pub delivered: usize,
    /// Events written to the DLQ.
    pub dead_lettered: usize,
}

impl ConnectorFunction {
    /// A connector for `destination` of `config`, dead-lettering to `dlq`.
    ///
    /// # Errors
    /// [`AwsError::Config`] when the destination is not configured or its connector cannot be
    /// built (an unset secret variable, …).
    pub fn new(
        config: &Config,
        destination: &str,
        dlq: Arc<dyn DeadLetterSink>,
    ) -> Result<Self, AwsError> {
        let settings = config
            .destinations
            .get(destination)
            .cloned()
            .ok_or_else(|| {
                AwsError::Config(format!(
                    "{}: no [destinations.{destination}] (it has: {})",
                    config.source.label(),
                    config
                        .destinations
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let connector = connectors::build(destination, &settings)
            .map_err(|error| AwsError::Config(error.to_string()))?;
        Ok(Self {
            destination: destination.to_owned(),
            connector,
            settings,
            dlq,
            metrics: Arc::new(Metrics::new()),
            suppressions: None,
            live_suppressions: Arc::new(LiveSuppressions::empty()),
        })
    }

    /// The connector, also leaving out the events of users `suppressions` lists.
    #[must_use]
    pub fn with_suppressions(mut self, suppressions: S3SuppressionList) -> Self {
        self.suppressions = Some(suppressions);
        self
    }

    /// Built from the environment (`TRIBUTARY_DESTINATION`, `TRIBUTARY_CONNECTOR_CONFIG`,
    /// `TRIBUTARY_CONNECTOR_DLQ_URL`, and the suppression list's `TRIBUTARY_SUPPRESSIONS_BUCKET`
    /// and `TRIBUTARY_SUPPRESSIONS_KEY`); relative paths in the configuration are under `/tmp`.
    ///
    /// # Errors
    /// As [`ConnectorFunction::new`], and for a missing variable or invalid configuration.
    pub fn from_env(sdk_config: &aws_config::SdkConfig) -> Result<Self, AwsError> {
        let destination = settings::required(settings::DESTINATION_ENV)?;
        let text = settings::required(settings::CONNECTOR_CONFIG_ENV)?;
        let config = Config::parse(
            &text,
            ConfigSource::Environment {
                variable: settings::CONNECTOR_CONFIG_ENV.into(),
                base: std::env::temp_dir(),
            },
        )
        .map_err(|error| AwsError::Config(error.to_string()))?;
        let dlq = SqsDeadLetterQueue::new(
            aws_sdk_sqs::Client::new(sdk_config),
            settings::required(settings::CONNECTOR_DLQ_URL_ENV)?,
        );
        let function = Self::new(&config, &destination, Arc::new(dlq))?;
        Ok(
            match settings::optional(settings::SUPPRESSIONS_BUCKET_ENV) {
                Some(bucket) => function.with_suppressions(S3SuppressionList::new(
                    super::router::s3_client(sdk_config),
                    bucket,
                    settings::optional(settings::SUPPRESSIONS_KEY_ENV)
                        .unwrap_or_else(|| settings::DEFAULT_SUPPRESSIONS_KEY.into()),
                )),
                None => function,
            },
        )
    }

    /// Handles one invocation: an SQS event (answered with a partial batch response) or the
    /// router's payload (answered with the counts). `deadline` is the function's.
    ///
    /// # Errors
    /// When the payload is neither (Lambda retries it, then its DLQ keeps it), or when a
    /// suppression list is configured and none could ever be loaded.
    pub async fn handle(
        &self,
        payload: Value,
        deadline: tokio::time::Instant,
    ) -> Result<Value, AwsError> {
        let is_sqs = payload
            .get("Records")
            .and_then(Value::as_array)
            .and_then(|records| records.first())
            .and_then(|record| record.get("eventSource"))
            .and_then(Value::as_str)
            == Some("aws:sqs");
        if is_sqs {
            let event: SqsEvent = serde_json::from_value(payload)
                .map_err(|error| AwsError::Config(format!("not an SQS event: {error}")))?;
            let response = self.handle_sqs(event, deadline).await;
            return serde_json::to_value(response)
                .map_err(|error| AwsError::Config(error.to_string()));
        }
        self.refresh_suppressions().await?;
        let body = payload.to_string();
        let message = parse_body(&body, Some(&self.destination)).map_err(|error| {
            AwsError::Config(format!("the payload is not the router's: {error}"))
        })?;
        let report = self.deliver(message.outgoing_events(), deadline).await;
        Ok(json!({"delivered": report.delivered, "dead_lettered": report.dead_lettered}))
    }

    /// Handles an SQS event: each message delivered or dead-lettered; a message whose body is
    /// not a payload is reported, so the queue's RedrivePolicy moves it to the DLQ as it is.
    pub async fn handle_sqs(
        &self,
        event: SqsEvent,
        deadline: tokio::time::Instant,
    ) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        if let Err(error) = self.refresh_suppressions().await {
            tracing::error!(message = "no suppression list; the batch is retried", %error);
            for message in event.records {
                response.add_failure(message.message_id.unwrap_or_default());
            }
            return response;
        }
        for message in event.records {
            let id = message.message_id.clone().unwrap_or_default();
            let body = message.body.as_deref().unwrap_or_default();
            match parse_body(body, Some(&self.destination)) {
                Ok(parsed) => {
                    self.deliver(parsed.outgoing_events(), deadline).await;
                }
                Err(error) => {
                    tracing::error!(message = "unreadable SQS message", message_id = %id, %error);
                    response.add_failure(id);
                }
            }
        }
        response
    }

    /// Reads the suppression list again when its object changed (a conditional `GetObject`).
    async fn refresh_suppressions(&self) -> Result<(), AwsError> {
        if let Some(list) = &self.suppressions {
            self.live_suppressions.set_index(list.current().await?);
        }
        Ok(())
    }

    /// Delivers `events` in batches of the destination's `batch_size`, each until delivered or
    /// dead-lettered.
    pub async fn deliver(
        &self,
        events: Vec<OutgoingEvent>,
        deadline: tokio::time::Instant,
    ) -> ConnectorReport {
        let context = Arc::new(JobContext {
            destination: self.destination.clone(),
            connector: self.connector.clone(),
            retry: crate::connectors::retry::RetryPolicy::new(self.settings.retry),
            dlq: self.dlq.clone(),
            deadline: Some(deadline.checked_sub(DEADLINE_MARGIN).unwrap_or(deadline)),
            metrics: self.metrics.clone(),
            consent: ConsentRequirement::new(&self.settings.requires_consent),
            suppressions: self.live_suppressions.clone(),
        });
        let mut report = ConnectorReport::default();
        for batch in events.chunks(self.settings.batch_size.max(1)) {
            let JobOutcome {
                delivered,
                dead_lettered,
            } = job::run(context.clone(), batch.to_vec()).await;
            report.delivered += delivered;
            report.dead_lettered += dead_lettered;
        }
        tracing::info!(
            message = "batch delivered",
            destination = %self.destination,
            delivered = report.delivered,
            dead_lettered = report.dead_lettered
        );
        report
    }
}

/// The function's deadline as a tokio instant, from Lambda's (Unix milliseconds).
pub fn deadline_from_unix_millis(deadline_ms: u64) -> tokio::time::Instant {
    let now_ms = crate::clock::now().as_unix_millis();
    tokio::time::Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}
