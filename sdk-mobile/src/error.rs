//! The one error type the FFI knows, and the one place internal errors become it.
//!
//! Messages name a field, a limit or a kind of failure; they never carry an event's values, a
//! write key or a file path (they end up in app logs and crash reports).

use tributary_core::ValidationError;
use tributary_core::envelope::Problem;
use tributary_core::store::StoreError;

/// Why a call failed. Every variant but `InvalidInput` leaves tracked events safe in the queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum TributaryError {
    /// An argument breaks a rule: an empty write key, an endpoint that is not a URL, an event
    /// name that is empty or too long, properties that are not a JSON object.
    #[error("invalid input: {reason}")]
    InvalidInput {
        /// The field at fault and the rule it breaks.
        reason: String,
    },
    /// The store could not be read or written; events stay in memory.
    #[error("storage failed: {reason}")]
    Storage {
        /// The kind of failure (no path).
        reason: String,
    },
    /// An upload failed (no connection, a timeout, a server error, a refused write key); the
    /// events stay queued and are retried by the core's backoff rules.
    #[error("not delivered: {reason}")]
    Network {
        /// The last failure seen.
        reason: String,
    },
    /// `flush_blocking` gave up waiting; the events stay queued and are still sent.
    #[error("timed out after {millis} ms")]
    Timeout {
        /// How long it waited.
        millis: u64,
    },
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
}

impl From<ValidationError> for TributaryError {
    fn from(error: ValidationError) -> Self {
        // A parser's message may quote a value from the event: keep only the field.
        let reason = match error.problem {
            Problem::Malformed(_) => format!("{}: malformed", error.field),
            _ => error.to_string(),
        };
        Self::InvalidInput { reason }
    }
}

impl From<&StoreError> for TributaryError {
    fn from(error: &StoreError) -> Self {
        let reason = match error {
            StoreError::Sqlite { source, .. } => match source.sqlite_error_code() {
                Some(code) => format!("SQLite error {code:?}"),
                None => "SQLite error".to_owned(),
            },
            StoreError::Io { source, .. } => format!("file error ({:?})", source.kind()),
            StoreError::Encoding { key, .. } => format!("stored value {key} is unreadable"),
        };
        Self::Storage { reason }
    }
}

pub(crate) fn invalid(reason: impl Into<String>) -> TributaryError {
    TributaryError::InvalidInput {
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_keep_the_field_and_drop_quoted_values() {
        let error = ValidationError::new("data", Problem::Malformed("`secret@example.com`".into()));
        let converted = TributaryError::from(error);
        assert_eq!(converted.to_string(), "invalid input: data: malformed");

        let error = ValidationError::new("name", Problem::Empty);
        assert_eq!(
            TributaryError::from(error).to_string(),
            "invalid input: name: must not be empty"
        );
    }

    #[test]
    fn storage_errors_never_carry_the_path() {
        let error = StoreError::Io {
            path: "/data/user/0/com.example/files/alice/events.db".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        let converted = TributaryError::from(&error).to_string();
        assert!(!converted.contains("alice"), "{converted}");
        assert_eq!(converted, "storage failed: file error (PermissionDenied)");
    }
}
