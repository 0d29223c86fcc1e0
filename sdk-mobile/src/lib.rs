//! The mobile SDK: a thread-safe client over [`tributary_core`], exported to Kotlin, Swift and
//! Python with uniffi.
//!
//! One [`TributaryClient`] per app holds the core's [`tributary_core::DeliveryQueue`] and its
//! SQLite store (a file the app names). Its calls (`track`, `identify`, `screen`, `flush`, …)
//! only validate the event and queue it in memory; a driver thread of the client's own performs
//! the store writes and hands batches to the app's [`Uploader`] on an upload thread, so neither
//! disk nor network I/O ever runs on the caller's thread.
//!
//! - [`client`]: the exported client object and its calls.
//! - [`config`]: what the app configures.
//! - `driver`: the thread that drives the core (storage, uploads, timers).
//! - [`upload`]: the uploader interface the platform implements (OkHttp, URLSession, urllib).
//! - [`lifecycle`]: the Application Installed/Updated/Opened/Backgrounded events.
//! - [`listener`]: what the app can observe (deliveries, drops, evictions, retries, pauses).
//! - [`clock`]: the system clock, and the manual one of test builds (`test-clock`).
//! - `policy_overrides`: every policy field, for the conformance suite (`test-clock` builds).
//! - [`stats`]: the counters the app can read.
//! - [`error`]: the FFI error enum.
//!
//! # Invariants
//! - Only the driver thread touches the store, one operation at a time, in the order the core
//!   emitted them; an event is stored before it is uploaded, and deleted only after its batch's
//!   answer was 2xx (or a permanent failure, counted).
//! - No caller thread waits on disk or network, except the documented blocking calls
//!   (`flush_blocking`, `wait_until_stored`, `shutdown`) and opening the client (one read).
//! - Every upload reports back exactly once, even when the uploader throws or panics.

uniffi::setup_scaffolding!();

pub mod client;
pub mod clock;
pub mod config;
mod driver;
pub mod error;
pub mod lifecycle;
pub mod listener;
#[cfg(feature = "test-clock")]
pub mod policy_overrides;
pub mod stats;
pub mod upload;

pub use client::TributaryClient;
#[cfg(feature = "test-clock")]
pub use clock::ManualClock;
pub use config::ClientConfig;
pub use error::TributaryError;
pub use listener::{DeliveryEvent, DeliveryListener};
pub use stats::ClientStats;
pub use upload::{UploadError, UploadRequest, UploadResponse, Uploader};
