//! Delivery: one worker per destination follows the log, takes the events the routing rules
//! give it, and delivers them in batches through its connector with the one retry rule, then the
//! DLQ.
//!
//! - [`worker`]: following the log, batching, per-key order, committing offsets.
//! - [`job`]: one batch's attempts, backoff and dead-lettering.
//! - [`runtime`]: the lower-priority runtime the workers run on in `tributary serve`.
//!
//! # Invariants
//! - Order holds per (destination, key) for first attempts: a key with a batch in flight or
//!   waiting for a retry gets no new batch until that one is delivered or dead-lettered, so a
//!   retrying event delays later events with the same key for that destination only.
//! - A destination's committed offset never passes an event that is not yet delivered or in the
//!   DLQ; a crash redelivers what came after the last commit (at-least-once; the warehouse and
//!   webhooks deduplicate by event id).

pub mod job;
pub mod runtime;
pub mod worker;

pub use worker::DestinationWorker;

#[cfg(test)]
mod tests;
