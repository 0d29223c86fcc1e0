//! Dead letters in SQS: the connector's DLQ messages (local mode's shape, with the attributes
//! `destination`, `error_class` and `attempts`), and the router's poison records.
//!
//! # Invariants
//! - A DLQ message too large for one SQS message (256 KiB) is split into several messages with
//!   the same metadata and the events shared out, never truncated.

use std::collections::BTreeMap;

use aws_sdk_sqs::types::MessageAttributeValue;

use super::records::PoisonRecord;
use super::settings::{self, AwsError};
use crate::dlq::message::Attribute;
use crate::dlq::{DeadLetterMessage, DeadLetterSink, WriteFuture};

/// SQS's limit on one message: body and attributes.
pub const SQS_MAX_MESSAGE_BYTES: usize = 262_144;
/// What a body may take, leaving room for the attributes.
const MAX_BODY_BYTES: usize = SQS_MAX_MESSAGE_BYTES - 2_048;

/// One SQS queue used as a dead-letter queue.
#[derive(Debug, Clone)]
pub struct SqsDeadLetterQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsDeadLetterQueue {
    /// The queue at `url`.
    pub fn new(client: aws_sdk_sqs::Client, url: String) -> Self {
        Self { client, url }
    }

    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends a DLQ message (split when too large).
    ///
    /// # Errors
    /// When SQS does not take it.
    pub async fn write_message(&self, message: &DeadLetterMessage) -> Result<(), AwsError> {
        for part in split(message) {
            self.send(part.to_json(), &part.attributes()).await?;
        }
        Ok(())
    }

    /// Sends a poison record.
    ///
    /// # Errors
    /// When SQS does not take it, or it is over SQS's message size (its payload must not be cut).
    pub async fn write_poison(&self, poison: &PoisonRecord) -> Result<(), AwsError> {
        let body = poison.to_json();
        if body.len() > MAX_BODY_BYTES {
            return Err(AwsError::Config(format!(
                "the poison record at {} is {} bytes as a DLQ message, over SQS's limit",
                poison.sequence_number,
                body.len()
            )));
        }
        let text = |value: &str| Attribute {
            data_type: "String".into(),
            string_value: value.to_owned(),
        };
        let attributes = BTreeMap::from([
            ("error_class".to_owned(), text("poison")),
            ("shard_id".to_owned(), text(&poison.shard_id)),
        ]);
        self.send(body, &attributes).await
    }

    async fn send(
        &self,
        body: String,
        attributes: &BTreeMap<String, Attribute>,
    ) -> Result<(), AwsError> {
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body);
        for (name, attribute) in attributes {
            let value = MessageAttributeValue::builder()
                .data_type(&attribute.data_type)
                .string_value(&attribute.string_value)
                .build()
                .map_err(|error| AwsError::Config(format!("attribute {name}: {error}")))?;
            request = request.message_attributes(name, value);
        }
        request
            .send()
            .await
            .map_err(|error| settings::call_error("sqs SendMessage", &error))?;
        Ok(())
    }
}

impl DeadLetterSink for SqsDeadLetterQueue {
    fn write<'a>(&'a self, message: &'a DeadLetterMessage) -> WriteFuture<'a> {
        Box::pin(async move {
            self.write_message(message)
                .await
                .map_err(|error| error.to_string())
        })
    }
}

/// `message` as parts that each fit in one SQS message (one part when it fits).
pub fn split(message: &DeadLetterMessage) -> Vec<DeadLetterMessage> {
    let empty = DeadLetterMessage {
        events: Vec::new(),
        ..message.clone()
    };
    let overhead = empty.to_json().len();
    let mut parts = Vec::new();
    let mut part = empty.clone();
    let mut size = overhead;
    for event in &message.events {
        let added = event.get().len() + 1;
        if !part.events.is_empty() && size + added > MAX_BODY_BYTES {
            parts.push(std::mem::replace(&mut part, empty.clone()));
            size = overhead;
        }
        part.events.push(event.clone());
        size += added;
    }
    if !part.events.is_empty() || parts.is_empty() {
        parts.push(part);
    }
    parts
}
