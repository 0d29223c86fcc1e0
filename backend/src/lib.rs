//! Tributary's backend: the HTTP ingest, the embedded durable log, routing rules, connectors
//! with the one retry rule, the dead-letter queue, and local mode (`tributary serve`).
//!
//! The same ingest, routing and connector code runs in AWS Lambda later; only the log (Kinesis),
//! the DLQ (SQS) and the rules source (S3) change. `docs/ARCHITECTURE.md` has the map.
//!
//! - [`config`]: the configuration file, `tributary.toml`.
//! - [`ingest`]: the HTTP API.
//! - [`log`]: the embedded durable log.
//! - [`routing`]: the rules file.
//! - [`delivery`]: per-destination workers and retry jobs.
//! - [`connectors`]: `sqlite`, `jsonl`, `webhook`.
//! - [`dlq`]: the dead-letter queue, backups and redrive.
//! - [`ops`]: `/healthz`, `/metrics`, the status page.
//! - [`privacy`]: client addresses, consent, suppression, deletion, the audit trail.
//! - [`local`]: local mode, everything in one process.
//! - [`http_listener`]: local mode's HTTP server (connections, timeouts, graceful shutdown).
//! - [`cli`]: the `tributary` command.
//! - `aws` (feature `aws`): AWS mode's Lambda functions (ingest, router, connector).

#[cfg(feature = "aws")]
pub mod aws;
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub mod cli;
pub mod clock;
pub mod config;
pub mod connectors;
pub mod delivery;
pub mod dlq;
pub mod http_listener;
pub mod ingest;
pub mod local;
pub mod log;
pub mod ops;
pub mod privacy;
pub mod routing;
