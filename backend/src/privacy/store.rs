//! Where the suppression list is kept: the data dir's `suppressions.json` (local mode), or an S3
//! object beside the rules (AWS mode, `tributary privacy … --s3`). Both are read and changed
//! whole, a change never losing a concurrent one (a file lock; an ETag precondition).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::PrivacyError;
use super::suppression::{SuppressionFile, SuppressionList};

/// A change to the list. It may run more than once (a store that lost a race reads the list
/// again and applies it again), so it must only depend on the list it is given.
pub type ListChange = Arc<dyn Fn(&mut SuppressionList) + Send + Sync>;

/// The future a [`SuppressionStore`] returns: the list read, or written.
pub type ListFuture<'a> =
    Pin<Box<dyn Future<Output = Result<SuppressionList, PrivacyError>> + Send + 'a>>;

/// A place the suppression list is kept.
pub trait SuppressionStore: Send + Sync {
    /// Where, for people (a path, an `s3://` URL).
    fn location(&self) -> String;

    /// The list now (empty when there is none yet).
    fn load(&self) -> ListFuture<'_>;

    /// Reads the list, applies `change`, writes it back; the list written.
    fn update(&self, change: ListChange) -> ListFuture<'_>;
}

impl SuppressionStore for SuppressionFile {
    fn location(&self) -> String {
        self.path().display().to_string()
    }

    fn load(&self) -> ListFuture<'_> {
        let file = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || file.load())
                .await
                .map_err(|error| PrivacyError::Invalid(format!("the list task failed: {error}")))?
        })
    }

    fn update(&self, change: ListChange) -> ListFuture<'_> {
        let file = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                file.update(|list| change(list)).map(|((), list)| list)
            })
            .await
            .map_err(|error| PrivacyError::Invalid(format!("the list task failed: {error}")))?
        })
    }
}
