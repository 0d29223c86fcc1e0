//! Dead-letter queues: where batches go when their destination refused them or the retries ran
//! out, and the tools that bring them back.
//!
//! - [`message`]: the message body (the same locally and in SQS) and its attributes.
//! - [`local`]: the embedded DLQ (`dlq.db`).
//! - [`backup`]: the backup file (`dlq backup --out`), the article's script's shape.
//! - [`redrive`]: delivering messages again.
//!
//! # Invariants
//! - A batch is in the DLQ before its log offset is committed, so a crash in between leads to a
//!   redelivery, never a loss.
//! - Redrive deletes a message only after all its events were delivered; what failed again stays
//!   with `attempts` raised.

pub mod backup;
pub mod local;
pub mod message;
pub mod redrive;

pub use local::{DeadLetterQueue, DlqError, ListedMessage, StoredMessage, UnreadableMessage};
pub use message::{DeadLetterError, DeadLetterMessage};
