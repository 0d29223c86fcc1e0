//! AWS mode (feature `aws`): the three Lambda functions, as library code the `bin/` files only
//! wire to the runtime. The same ingest router, rules, connectors and retry rule as local mode;
//! only the log (Kinesis), the DLQ (SQS) and the rules source (S3) change. `docs/AWS.md` is the
//! reference, `backend/template.yaml` the deployment.
//!
//! - [`settings`]: the environment variables each function reads, and the AWS clients.
//! - [`kinesis_sink`]: the ingest's [`crate::ingest::EventSink`] on the server SDK's Kinesis
//!   producer (KPL aggregation, per-record retries within the request's time budget).
//! - [`ingest`]: the ingest function, `lambda_http` around the axum router.
//! - [`rules_source`]: the rules file in S3, cached and re-read when its ETag changes.
//! - [`suppression_source`]: the suppression list in S3 beside the rules, read the same way,
//!   and written by `tributary privacy … --s3` with an ETag precondition.
//! - [`records`]: Kinesis records → envelopes (de-aggregation, `received_at`), or poison.
//! - [`destinations`]: sending a destination its events: asynchronous `Invoke` of a Lambda
//!   function or `SendMessageBatch` to an SQS queue, chunked to each service's limits.
//! - [`router`]: the router function (Kinesis event → partial batch response).
//! - [`sqs_dlq`]: dead-letter messages written to SQS.
//! - [`connector`]: the connector function (the router's invoke payload, or SQS events).
//! - [`stream_source`]: `tributary serve --source kinesis:STREAM`, the router outside Lambda.
//! - [`queue_tool`]: `tributary dlq … --queue URL` (list, backup, redrive, purge on SQS).
//!
//! # Invariants
//! - Ingest answers `200` only when every accepted event is in the stream, else `503` (clients
//!   retry with the same ids; duplicates are removed downstream by id).
//! - The router reports in `batchItemFailures` only records that failed for a reason that may
//!   pass (a throttled or unavailable destination, a DLQ write that failed), each by the
//!   sequence number of the Kinesis record that carried it (de-aggregated records share their
//!   parent's). A record that cannot be read (poison) is written to the router's DLQ with its
//!   payload and never reported: retrying it would only block the shard. A batch a destination
//!   refuses for good is written to the router's DLQ as a DLQ message, redrivable.
//! - A record is acknowledged (not reported) only after every destination that wants one of its
//!   events has accepted them, or they are in a DLQ.
//! - The router never sends an event the suppression list in S3 drops (a suppressed user's,
//!   received at or after `since`; a deleted user's, received before `received_before`); such
//!   events are counted and their records acknowledged. Without a loaded list (a malformed object
//!   at the first read) the batch fails as a whole rather than deliver them.
//! - The connector ends every batch delivered or in its DLQ (written by itself, with the DLQ
//!   message shape of local mode) before it returns.

pub mod connector;
pub mod destinations;
pub mod ingest;
pub mod kinesis_sink;
pub mod queue_tool;
pub mod records;
pub mod router;
pub mod rules_source;
mod s3_object;
pub mod settings;
pub mod sqs_dlq;
pub mod stream_source;
pub mod suppression_source;

pub use settings::AwsError;
pub use sqs_dlq::SqsDeadLetterQueue;
