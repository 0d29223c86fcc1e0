//! Tributary for backend servers.
//!
//! An async (tokio) client that sends events to a Tributary ingest over HTTP (`POST /v1/batch`),
//! driving the same core as every other Tributary SDK: the same batching, retry, backoff, pause
//! and eviction rules ([`tributary_core::policy`]). Beside it, Kinesis mode ([`kinesis`], feature
//! `kinesis`) puts events straight into a Kinesis data stream: a pure-Rust, KPL-compatible
//! producer.
//!
//! ```no_run
//! use serde_json::json;
//! use tributary_server::{Client, Event};
//!
//! # async fn example() -> Result<(), tributary_server::Error> {
//! let client = Client::builder("dev-write-key")
//!     .endpoint("http://127.0.0.1:8080")
//!     .build()?;
//! client.track(Event::new("login").user_id("user-42").data(json!({"method": "sso"})))?;
//! client.identify("user-42", json!({"plan": "pro"}))?;
//! client.flush().await?;
//! let report = client.shutdown(std::time::Duration::from_secs(5)).await;
//! assert_eq!(report.lost, 0);
//! # Ok(()) }
//! ```
//!
//! # Invariants
//! - `track` never blocks and never waits: it checks what it can at once, hands the event to a
//!   background task and returns. [`Client::track_with_backpressure`] waits instead while the
//!   queue is full and delivering.
//! - Every event ends delivered, dropped (counted, reported to [`ClientBuilder::on_event`]),
//!   persisted for the next start (with a SQLite store), or counted as `lost` by
//!   [`Client::shutdown`] (memory queue only) — never silently gone.
//! - [`Client::shutdown`] returns within its timeout plus a small constant.

mod client;
mod driver;
mod error;
mod event;
mod http;
#[cfg(feature = "kinesis")]
pub mod kinesis;
mod report;
mod store;

pub use client::{Client, ClientBuilder, DEFAULT_ENDPOINT, DEFAULT_REQUEST_TIMEOUT};
pub use error::Error;
pub use event::Event;
pub use report::{ShutdownReport, Stats};
pub use tributary_core::Policy;
pub use tributary_core::queue::{DropReason, QueueEvent};
#[cfg(feature = "sqlite")]
pub use tributary_core::store::Durability;
