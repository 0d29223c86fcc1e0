//! The uploader interface the platform implements: one blocking HTTP request per call.
//!
//! The HTTP request is made by the platform, not in Rust (see the crate README for why): OkHttp
//! or `HttpURLConnection` on Android, `URLSession` on iOS, `urllib` in the Python harness. The
//! client decides everything else — when to send, what a status means, how long to back off —
//! through the core, so every platform behaves the same.
//!
//! # Invariants
//! - `upload` is called on the client's upload thread, never on the app's threads, with at most
//!   one request in flight per client.
//! - A thrown exception or a panic counts as a connection failure: the batch is kept and retried.

use std::collections::HashMap;

/// One `POST` for the uploader to send.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct UploadRequest {
    /// The full URL: `{endpoint}/v1/batch`.
    pub url: String,
    /// The headers to send: `Authorization`, `Content-Type`, `User-Agent`.
    pub headers: HashMap<String, String>,
    /// The JSON body `{"batch": [...], "sent_at": "..."}`.
    pub body: Vec<u8>,
    /// Give up on the request after this many milliseconds (report `TimedOut`).
    pub timeout_millis: u64,
}

/// The server's answer.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct UploadResponse {
    /// The HTTP status.
    pub status: u16,
    /// The `Retry-After` header as sent (seconds or an HTTP date), when present.
    pub retry_after: Option<String>,
    /// The response body (the core reads `rejected` entries from a 200); may be empty.
    pub body: Vec<u8>,
}

/// Why no answer arrived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum UploadError {
    /// DNS, connect, TLS or I/O failure, or the uploader threw.
    #[error("connection failed: {reason}")]
    ConnectionFailed {
        /// For logs; never shown to the ingest.
        reason: String,
    },
    /// No answer within `timeout_millis`.
    #[error("request timed out")]
    TimedOut,
}

impl From<uniffi::UnexpectedUniFFICallbackError> for UploadError {
    fn from(error: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::ConnectionFailed {
            reason: format!("the uploader threw: {}", error.reason),
        }
    }
}

/// Sends batches over HTTP; implemented by the platform.
#[uniffi::export(with_foreign)]
pub trait Uploader: Send + Sync {
    /// Sends `request` and waits for the answer.
    ///
    /// # Errors
    /// [`UploadError`] when no HTTP answer arrived; any HTTP status, 4xx and 5xx included, is an
    /// `Ok` answer.
    fn upload(&self, request: UploadRequest) -> Result<UploadResponse, UploadError>;
}
