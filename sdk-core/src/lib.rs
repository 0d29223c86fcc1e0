//! The sans-IO core every Tributary SDK shares.
//!
//! One core behind the web, mobile and server SDKs, so that every platform queues, batches,
//! retries and evicts by the same rules. The core never performs I/O, never reads a clock and
//! never blocks: the platform (a *driver*) feeds it events and the current time, asks it for work
//! with [`DeliveryQueue::poll`], performs that work — persist or delete records, upload a batch,
//! wake up at a given time — and reports each upload's outcome back with
//! [`DeliveryQueue::upload_completed`]. Because the core never waits on storage, an asynchronous
//! store such as IndexedDB fits as well as the synchronous SQLite store in [`store`].
//!
//! - [`envelope`]: the event envelope, its validation and limits, ids, reserved names.
//! - [`identity`]: the anonymous id, user id and traits a client-side SDK attaches to events.
//! - [`kpl`]: the KPL aggregation format (aggregate, de-aggregate, partition key hashing), for
//!   the Kinesis producer and the router.
//! - [`policy`]: every rule of the SDK defaults table, in one place.
//! - [`queue`]: the delivery queue state machine.
//! - [`store`]: the storage format and the memory and SQLite stores.
//!
//! # Invariants
//! - An event is only removed from the queue for a reason that is counted: delivered, dropped
//!   (with a [`queue::DropReason`]) or evicted. [`queue::Counters`] add up:
//!   `enqueued + restored = delivered + dropped + evicted + queued`.
//! - A batch handed to the platform never holds more than [`policy::Policy::max_batch_events`]
//!   events nor more than [`policy::Policy::max_batch_bytes`] bytes of body.
//! - Work is emitted in an order the platform must keep: a `Persist` of a record always precedes
//!   its `Delete`.

pub mod envelope;
pub mod identity;
pub mod kpl;
pub mod policy;
pub mod queue;
pub mod store;
mod timestamp;

pub use envelope::{Envelope, EventId, ValidationError};
pub use identity::Identity;
pub use policy::Policy;
pub use queue::{DeliveryQueue, UploadOutcome, Work};
pub use timestamp::{InvalidTimestamp, Timestamp};
