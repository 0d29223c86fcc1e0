//! The two Kinesis calls the producer makes, through `aws-sdk-kinesis`: `PutRecords` and
//! `ListShards`. The SDK's own retries are off: the producer retries per record.

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use tributary_core::kpl;

use super::shard_map::ShardRange;

/// What happened to one entry of a `PutRecords`.
#[derive(Debug, Clone)]
pub(crate) enum EntryResult {
    Put {
        shard_id: String,
        sequence_number: String,
    },
    Failed {
        code: String,
        message: String,
    },
}

/// Why a whole request failed.
#[derive(Debug, Clone)]
pub(crate) struct RequestError {
    pub(crate) code: String,
    pub(crate) message: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Api {
    client: Client,
    stream: String,
}

impl Api {
    pub(crate) fn new(client: Client, stream: String) -> Self {
        Self { client, stream }
    }

    pub(crate) async fn put_records(
        &self,
        entries: Vec<PutRecordsRequestEntry>,
    ) -> Result<Vec<EntryResult>, RequestError> {
        let count = entries.len();
        let output = self
            .client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(request_error)?;
        let results: Vec<EntryResult> = output
            .records()
            .iter()
            .map(|entry| match (entry.error_code(), entry.shard_id()) {
                (None, Some(shard_id)) => EntryResult::Put {
                    shard_id: shard_id.to_owned(),
                    sequence_number: entry.sequence_number().unwrap_or_default().to_owned(),
                },
                (code, _) => EntryResult::Failed {
                    code: code.unwrap_or("MissingShardId").to_owned(),
                    message: entry.error_message().unwrap_or_default().to_owned(),
                },
            })
            .collect();
        if results.len() != count {
            return Err(RequestError {
                code: "BadResponse".into(),
                message: format!("PutRecords answered {} entries for {count}", results.len()),
            });
        }
        Ok(results)
    }

    /// The open shards (closed ones, which have an ending sequence number, are left out).
    pub(crate) async fn list_shards(&self) -> Result<Vec<ShardRange>, RequestError> {
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let request = match &next_token {
                Some(token) => self.client.list_shards().next_token(token),
                None => self.client.list_shards().stream_name(&self.stream),
            };
            let output = request.send().await.map_err(request_error)?;
            for shard in output.shards() {
                let closed = shard
                    .sequence_number_range()
                    .and_then(|range| range.ending_sequence_number())
                    .is_some();
                if closed {
                    continue;
                }
                let range = shard.hash_key_range();
                let parse = |key: Option<&str>| key.and_then(kpl::parse_explicit_hash_key);
                match (
                    parse(range.map(|range| range.starting_hash_key())),
                    parse(range.map(|range| range.ending_hash_key())),
                ) {
                    (Some(start), Some(end)) => shards.push(ShardRange {
                        id: shard.shard_id().into(),
                        start,
                        end,
                    }),
                    _ => {
                        return Err(RequestError {
                            code: "BadResponse".into(),
                            message: format!(
                                "shard {} has no readable hash key range",
                                shard.shard_id()
                            ),
                        });
                    }
                }
            }
            next_token = output.next_token().map(str::to_owned);
            if next_token.is_none() {
                return Ok(shards);
            }
        }
    }
}

fn request_error<E, R>(error: SdkError<E, R>) -> RequestError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = match &error {
        SdkError::TimeoutError(_) => "Timeout".to_owned(),
        SdkError::DispatchFailure(_) => "DispatchFailure".to_owned(),
        SdkError::ConstructionFailure(_) => "ConstructionFailure".to_owned(),
        SdkError::ResponseError(_) => "ResponseError".to_owned(),
        _ => error.code().unwrap_or("ServiceError").to_owned(),
    };
    // A service error's own message; otherwise the whole chain of causes (a connection error's
    // is only in its sources).
    let message = match error.message() {
        Some(message) => message.to_owned(),
        None => DisplayErrorContext(&error).to_string(),
    };
    RequestError { code, message }
}
