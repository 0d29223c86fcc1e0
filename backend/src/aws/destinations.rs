//! Sending one destination its events, as the rules' `destination_arn` says:
//!
//! - a Lambda function ARN: asynchronous `Invoke` (`InvocationType=Event`) with the payload
//!   `{"destination": NAME, "events": [envelope, …]}`, at most 1 MB per invoke;
//! - an SQS queue ARN: `SendMessageBatch` of messages with that same payload as body, at most
//!   10 messages and 256 KiB per request (the queue URL is looked up once with `GetQueueUrl`).
//!
//! Every failure is classified by the one retry rule: throttling, 5xx, timeouts and connection
//! errors are retryable (the router reports the records, Lambda retries them); any other refusal
//! (no such function or queue, access denied, a payload refused) is permanent (the router
//! dead-letters the events, redrivable once the cause is fixed).

use std::collections::HashMap;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use tokio::sync::Mutex;

use super::settings;
use crate::connectors::{Failure, FailureClass, OutgoingEvent};

/// The most bytes of one asynchronous invoke's payload.
pub const LAMBDA_ASYNC_MAX_BYTES: usize = 1_000_000;
/// The most messages in one `SendMessageBatch`.
pub const SQS_BATCH_MAX_MESSAGES: usize = 10;
/// The most bytes (all bodies together) in one `SendMessageBatch`, and in one message.
pub const SQS_BATCH_MAX_BYTES: usize = 262_144;

/// Error codes that mean "try again later" whatever their HTTP status.
const TRANSIENT_CODES: &[&str] = &[
    "TooManyRequestsException",
    "ThrottlingException",
    "Throttling",
    "RequestThrottled",
    "ServiceException",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "ResourceConflictException",
    "ResourceNotReadyException",
    "SnapStartNotReadyException",
    "EC2ThrottledException",
    "KMSThrottlingException",
    "RequestTimeout",
];

/// Where a rule sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationArn {
    /// A Lambda function (asynchronous invoke).
    Lambda(String),
    /// An SQS queue: its ARN, name and owner account.
    Sqs {
        /// The ARN.
        arn: String,
        /// The queue's name.
        name: String,
        /// The account that owns it.
        account: String,
    },
}

impl DestinationArn {
    /// Parses `arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]` or
    /// `arn:PARTITION:sqs:REGION:ACCOUNT:NAME`.
    ///
    /// # Errors
    /// A message saying what the ARN should look like.
    pub fn parse(arn: &str) -> Result<Self, String> {
        let parts: Vec<&str> = arn.split(':').collect();
        match parts.as_slice() {
            ["arn", _, "lambda", _, _, "function", name, ..] if !name.is_empty() => {
                Ok(Self::Lambda(arn.to_owned()))
            }
            ["arn", _, "sqs", _, account, name] if !name.is_empty() => Ok(Self::Sqs {
                arn: arn.to_owned(),
                name: (*name).to_owned(),
                account: (*account).to_owned(),
            }),
            _ => Err(format!(
                "destination_arn {arn:?} is neither a Lambda function ARN \
                 (arn:aws:lambda:REGION:ACCOUNT:function:NAME) nor an SQS queue ARN \
                 (arn:aws:sqs:REGION:ACCOUNT:NAME)"
            )),
        }
    }
}

/// What happened to one destination's events: the failed ones, by index, with why.
#[derive(Debug, Default)]
pub struct SendOutcome {
    /// Requests sent (invokes or `SendMessageBatch` calls).
    pub requests: usize,
    /// Failures: the indexes of the events concerned, and the failure.
    pub failures: Vec<(Vec<usize>, Failure)>,
}

/// The clients the router sends with.
#[derive(Debug)]
pub struct Destinations {
    lambda: aws_sdk_lambda::Client,
    sqs: aws_sdk_sqs::Client,
    queue_urls: Mutex<HashMap<String, String>>,
}

impl Destinations {
    /// Sends with these clients.
    pub fn new(lambda: aws_sdk_lambda::Client, sqs: aws_sdk_sqs::Client) -> Self {
        Self {
            lambda,
            sqs,
            queue_urls: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `events` to the destination called `name` at `arn`.
    pub async fn send(&self, name: &str, arn: &str, events: &[&OutgoingEvent]) -> SendOutcome {
        let mut outcome = SendOutcome::default();
        let all = || (0..events.len()).collect::<Vec<_>>();
        let arn = match DestinationArn::parse(arn) {
            Ok(arn) => arn,
            Err(message) => {
                outcome.failures.push((all(), Failure::permanent(message)));
                return outcome;
            }
        };
        match arn {
            DestinationArn::Lambda(function) => {
                for chunk in payloads(name, events, LAMBDA_ASYNC_MAX_BYTES) {
                    outcome.requests += 1;
                    if let Err(failure) = self.invoke(&function, chunk.body).await {
                        outcome.failures.push((chunk.indexes, failure));
                    }
                }
            }
            DestinationArn::Sqs {
                arn,
                name: queue,
                account,
            } => {
                let url = match self.queue_url(&arn, &queue, &account).await {
                    Ok(url) => url,
                    Err(failure) => {
                        outcome.failures.push((all(), failure));
                        return outcome;
                    }
                };
                let messages = payloads(name, events, SQS_BATCH_MAX_BYTES);
                for batch in sqs_batches(messages) {
                    outcome.requests += 1;
                    outcome.failures.extend(self.send_batch(&url, batch).await);
                }
            }
        }
        outcome
    }

    async fn invoke(&self, function: &str, payload: String) -> Result<(), Failure> {
        self.lambda
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload))
            .send()
            .await
            .map(|_| ())
            .map_err(|error| failure("lambda Invoke", &error))
    }

    async fn queue_url(&self, arn: &str, name: &str, account: &str) -> Result<String, Failure> {
        let mut urls = self.queue_urls.lock().await;
        if let Some(url) = urls.get(arn) {
            return Ok(url.clone());
        }
        let output = self
            .sqs
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(|error| failure("sqs GetQueueUrl", &error))?;
        let url = output.queue_url().unwrap_or_default().to_owned();
        urls.insert(arn.to_owned(), url.clone());
        Ok(url)
    }

    async fn send_batch(&self, url: &str, batch: Vec<Payload>) -> Vec<(Vec<usize>, Failure)> {
        let mut entries = Vec::with_capacity(batch.len());
        for (index, message) in batch.iter().enumerate() {
            match SendMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .message_body(&message.body)
                .build()
            {
                Ok(entry) => entries.push(entry),
                Err(error) => {
                    return vec![(
                        batch.iter().flat_map(|m| m.indexes.clone()).collect(),
                        Failure::permanent(format!("sqs SendMessageBatch: {error}")),
                    )];
                }
            }
        }
        match self
            .sqs
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(output) => output
                .failed()
                .iter()
                .filter_map(|entry| {
                    let message = batch.get(entry.id().parse::<usize>().ok()?)?;
                    let class = if entry.sender_fault() {
                        FailureClass::Permanent
                    } else {
                        FailureClass::Retryable
                    };
                    Some((
                        message.indexes.clone(),
                        Failure {
                            class,
                            status: None,
                            message: format!(
                                "sqs SendMessageBatch: {}: {}",
                                entry.code(),
                                entry.message().unwrap_or_default()
                            ),
                            retry_after: None,
                        },
                    ))
                })
                .collect(),
            Err(error) => vec![(
                batch.iter().flat_map(|m| m.indexes.clone()).collect(),
                failure("sqs SendMessageBatch", &error),
            )],
        }
    }
}

/// A [`Failure`] from an SDK error, classified by the one retry rule.
fn failure<E, R>(operation: &str, error: &SdkError<E, R>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    let status = error.raw_response().map(HttpStatus::status);
    let class = match (status, error.code()) {
        (None, _) => FailureClass::Retryable,
        (Some(408 | 429 | 500..=599), _) => FailureClass::Retryable,
        (_, Some(code)) if TRANSIENT_CODES.contains(&code) => FailureClass::Retryable,
        _ => FailureClass::Permanent,
    };
    Failure {
        class,
        status,
        message: format!("{operation}: {}", settings::describe(error)),
        retry_after: None,
    }
}

/// The HTTP status of a raw response.
pub trait HttpStatus {
    /// The status code.
    fn status(&self) -> u16;
}

impl HttpStatus for aws_sdk_sqs::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

/// One request's body and the events it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// `{"destination": NAME, "events": [...]}`.
    pub body: String,
    /// Indexes of the events in it.
    pub indexes: Vec<usize>,
}

/// The events as payloads of at most `max_bytes` each (an event too large for any payload gets
/// one of its own).
pub fn payloads(name: &str, events: &[&OutgoingEvent], max_bytes: usize) -> Vec<Payload> {
    let prefix = format!(
        "{{\"destination\":{},\"events\":[",
        serde_json::to_string(name).unwrap_or_else(|_| "\"\"".into())
    );
    let suffix = "]}";
    let mut payloads = Vec::new();
    let mut current = Payload {
        body: prefix.clone(),
        indexes: Vec::new(),
    };
    for (index, event) in events.iter().enumerate() {
        let added = event.json.len() + usize::from(!current.indexes.is_empty());
        if !current.indexes.is_empty() && current.body.len() + added + suffix.len() > max_bytes {
            current.body.push_str(suffix);
            payloads.push(std::mem::replace(
                &mut current,
                Payload {
                    body: prefix.clone(),
                    indexes: Vec::new(),
                },
            ));
        }
        if !current.indexes.is_empty() {
            current.body.push(',');
        }
        current.body.push_str(&event.json);
        current.indexes.push(index);
    }
    if !current.indexes.is_empty() {
        current.body.push_str(suffix);
        payloads.push(current);
    }
    payloads
}

/// Messages grouped into `SendMessageBatch` requests: ≤ 10 messages, ≤ 256 KiB together.
pub fn sqs_batches(messages: Vec<Payload>) -> Vec<Vec<Payload>> {
    let mut batches: Vec<Vec<Payload>> = Vec::new();
    let mut size = 0;
    for message in messages {
        let full = batches.last().is_none_or(|batch| {
            batch.len() >= SQS_BATCH_MAX_MESSAGES || size + message.body.len() > SQS_BATCH_MAX_BYTES
        });
        if full {
            batches.push(Vec::new());
            size = 0;
        }
        size += message.body.len();
        if let Some(batch) = batches.last_mut() {
            batch.push(message);
        }
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(size: usize) -> OutgoingEvent {
        let padding = "x".repeat(size.saturating_sub(30));
        OutgoingEvent {
            id: "id".into(),
            name: "n".into(),
            partition_key: "k".into(),
            json: format!("{{\"name\":\"n\",\"data\":{{\"p\":\"{padding}\"}}}}").into(),
        }
    }

    #[test]
    fn payloads_stay_under_the_limit_and_keep_every_event() {
        let events: Vec<OutgoingEvent> = (0..100).map(|i| event(1_000 + i * 37)).collect();
        let refs: Vec<&OutgoingEvent> = events.iter().collect();
        let chunks = payloads("hooks", &refs, 20_000);
        assert!(chunks.len() > 5);
        let mut seen = Vec::new();
        for chunk in &chunks {
            assert!(chunk.body.len() <= 20_000, "{}", chunk.body.len());
            let value: serde_json::Value = serde_json::from_str(&chunk.body).unwrap();
            assert_eq!(value["destination"], "hooks");
            assert_eq!(
                value["events"].as_array().unwrap().len(),
                chunk.indexes.len()
            );
            seen.extend(chunk.indexes.iter().copied());
        }
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn sqs_batches_hold_ten_messages_and_256_kib_at_most() {
        let events: Vec<OutgoingEvent> = (0..300).map(|_| event(30_000)).collect();
        let refs: Vec<&OutgoingEvent> = events.iter().collect();
        let messages = payloads("q", &refs, SQS_BATCH_MAX_BYTES);
        let count = messages.len();
        let batches = sqs_batches(messages);
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), count);
        for batch in &batches {
            assert!(batch.len() <= SQS_BATCH_MAX_MESSAGES);
            assert!(batch.iter().map(|m| m.body.len()).sum::<usize>() <= SQS_BATCH_MAX_BYTES);
        }
        let small: Vec<OutgoingEvent> = (0..25).map(|_| event(100)).collect();
        let refs: Vec<&OutgoingEvent> = small.iter().collect();
        let one_each: Vec<Payload> = refs
            .iter()
            .enumerate()
            .map(|(i, e)| payloads("q", &[*e], SQS_BATCH_MAX_BYTES).remove(0).tap(i))
            .collect();
        assert_eq!(
            sqs_batches(one_each)
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>(),
            [10, 10, 5]
        );
    }

    trait Tap {
        fn tap(self, index: usize) -> Self;
    }
    impl Tap for Payload {
        fn tap(mut self, index: usize) -> Self {
            self.indexes = vec![index];
            self
        }
    }

    #[test]
    fn arns() {
        assert!(matches!(
            DestinationArn::parse("arn:aws:lambda:us-east-1:123456789012:function:mixpanel"),
            Ok(DestinationArn::Lambda(_))
        ));
        assert_eq!(
            DestinationArn::parse("arn:aws:sqs:us-east-1:123456789012:hooks"),
            Ok(DestinationArn::Sqs {
                arn: "arn:aws:sqs:us-east-1:123456789012:hooks".into(),
                name: "hooks".into(),
                account: "123456789012".into(),
            })
        );
        assert!(DestinationArn::parse("local").is_err());
        assert!(DestinationArn::parse("arn:aws:s3:::bucket").is_err());
    }
}
