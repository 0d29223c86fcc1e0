//! Error responses: `{"error": {"code": "…", "message": "…"}}`, plus `line` and `column` for
//! malformed JSON and a `Retry-After` header for `429` and `503`.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer of the ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code.
    pub code: &'static str,
    /// What is wrong, for a person.
    pub message: String,
    /// For malformed JSON: where (1-based).
    pub line: Option<usize>,
    /// For malformed JSON: where (1-based).
    pub column: Option<usize>,
    /// For `429` and `503`: when to try again.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: String) -> Self {
        Self {
            status,
            code,
            message,
            line: None,
            column: None,
            retry_after: None,
        }
    }

    /// `400`: the body is not JSON, or not of the expected shape.
    pub fn from_json(error: &serde_json::Error) -> Self {
        let text = error.to_string();
        let message = tributary_core::envelope::validation::without_json_position(&text);
        let (code, message) = if error.is_data() {
            (
                "invalid_body",
                format!("the body does not have the expected shape: {message}"),
            )
        } else {
            (
                "invalid_json",
                format!("the body is not valid JSON: {message}"),
            )
        };
        Self {
            line: Some(error.line()),
            column: Some(error.column()),
            ..Self::new(StatusCode::BAD_REQUEST, code, message)
        }
    }

    /// `400`: the body parsed but a field of the request itself is unusable.
    pub fn invalid_body(message: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_body", message)
    }

    /// `400`: the gzip stream is corrupt.
    pub fn invalid_encoding(message: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_encoding", message)
    }

    /// `401`.
    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message.to_owned())
    }

    /// `408`: the body did not arrive in full within `timeout` (a slow or stalled sender).
    pub fn body_timeout(timeout: Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {} s: send it faster, or in smaller batches",
                timeout.as_secs_f64()
            ),
        )
    }

    /// `413`: the body is over the limit.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the body is over {limit} bytes (after decompression); send fewer events per request"
            ),
        )
    }

    /// `413`: too many events in one request.
    pub fn too_many_events(count: usize, limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            format!("the batch has {count} events, over the limit of {limit} per request"),
        )
    }

    /// `415`.
    pub fn unsupported_media_type(message: String) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    /// `429`: the key's rate limit.
    pub fn rate_limited(retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "this write key is over its rate limit; retry after the Retry-After delay".into(),
            )
        }
    }

    /// `503`: the log or stream cannot take events now.
    pub fn unavailable(reason: &str, retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!(
                    "events cannot be stored right now ({reason}); retry with the same event ids"
                ),
            )
        }
    }

    /// `503`: more request bytes are waiting to be made durable than `max_pending_bytes`; the
    /// request was shed before any of its events was stored.
    pub fn overloaded(max_pending_bytes: u32, retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!(
                    "the server is overloaded (over {max_pending_bytes} bytes of requests are waiting to be stored); nothing of this request was stored: retry after the Retry-After delay with the same event ids"
                ),
            )
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<usize>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                line: self.line,
                column: self.column,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(retry_after) = self.retry_after {
            // Rounded up: a client that waits exactly this long must find the wait over.
            let seconds = retry_after
                .as_secs()
                .saturating_add(u64::from(retry_after.subsec_nanos() > 0))
                .max(1);
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry_after_header(wait: Duration) -> String {
        ApiError::rate_limited(wait).into_response().headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds() {
        assert_eq!(retry_after_header(Duration::from_millis(1)), "1");
        assert_eq!(retry_after_header(Duration::from_secs(1)), "1");
        assert_eq!(retry_after_header(Duration::from_millis(1_050)), "2");
        assert_eq!(retry_after_header(Duration::from_millis(4_999)), "5");
    }
}
