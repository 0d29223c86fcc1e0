//! The event envelope: every event has a `name` and a `data` object; the SDKs add the rest.
//!
//! - [`event`]: the [`Envelope`] type and its JSON form.
//! - [`validation`]: the limits and the reasons a person can act on.
//! - [`id`]: UUIDv7 event ids and anonymous ids.
//! - [`reserved`]: the reserved `$identify`, `$page`, `$screen`, `$group`, `$alias` events.
//!
//! # Invariants
//! - An [`Envelope`] that passed [`Envelope::validate`] and whose JSON is at most
//!   [`MAX_EVENT_BYTES`] long is accepted by every Tributary ingest.
//! - The partition key is `anonymous_id`, else `user_id`, else `id`, so that one device's stream
//!   is not split when the user logs in.

pub mod event;
pub mod id;
pub mod reserved;
pub mod validation;

pub use event::Envelope;
pub use id::EventId;
pub use validation::{
    MAX_ANONYMOUS_ID_CHARS, MAX_EVENT_BYTES, MAX_ID_CHARS, MAX_NAME_CHARS, MAX_SOURCE_CHARS,
    MAX_USER_ID_CHARS, Problem, ValidationError,
};
