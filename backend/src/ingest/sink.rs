//! Where the ingest puts accepted events: the local log here, a Kinesis stream in AWS mode.

use std::future::Future;
use std::pin::Pin;

use crate::log::{AppendOutcome, EventLog, IncomingEvent, LogError};

/// A durable destination for accepted events. `append` returns only once the events are durable.
pub trait EventSink: Send + Sync + 'static {
    /// Stores events durably.
    ///
    /// # Errors
    /// When they could not all be stored; the ingest then answers `503` so clients retry with
    /// the same ids (duplicates are dropped by id).
    fn append(
        &self,
        events: Vec<IncomingEvent>,
    ) -> Pin<Box<dyn Future<Output = Result<AppendOutcome, LogError>> + Send + '_>>;
}

impl EventSink for EventLog {
    fn append(
        &self,
        events: Vec<IncomingEvent>,
    ) -> Pin<Box<dyn Future<Output = Result<AppendOutcome, LogError>> + Send + '_>> {
        Box::pin(EventLog::append(self, events))
    }
}
