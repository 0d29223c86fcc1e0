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

use std::future::Future;
use std::pin::Pin;

/// The future [`DeadLetterSink::write`] returns.
pub type WriteFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Where a delivery job writes the batches it gives up on: the local DLQ, or an SQS queue in
/// AWS mode (`crate::aws::SqsDeadLetterQueue`, feature `aws`).
pub trait DeadLetterSink: Send + Sync {
    /// Stores `message` durably.
    ///
    /// # Errors
    /// What failed, for a log line (the job tries again).
    fn write<'a>(&'a self, message: &'a DeadLetterMessage) -> WriteFuture<'a>;
}

impl DeadLetterSink for DeadLetterQueue {
    fn write<'a>(&'a self, message: &'a DeadLetterMessage) -> WriteFuture<'a> {
        let dlq = self.clone();
        let message = message.clone();
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || dlq.push(&message)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(error.to_string()),
                Err(error) => Err(format!("the DLQ writer task failed: {error}")),
            }
        })
    }
}
