//! HTTP mode's transport: `POST {endpoint}/v1/batch` with the write key as a Bearer token.

use std::io::Write;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use tributary_core::UploadOutcome;
use tributary_core::policy::parse_retry_after;

use crate::Error;
use crate::driver::now;

/// The most bytes of a response body read (enough for any `rejected` list of a 500-event batch).
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// Sends batches to one ingest.
#[derive(Debug, Clone)]
pub(crate) struct HttpTransport {
    client: reqwest::Client,
    url: String,
    authorization: HeaderValue,
    timeout: Duration,
    gzip: bool,
}

impl HttpTransport {
    pub(crate) fn new(
        endpoint: &str,
        write_key: &str,
        timeout: Duration,
        gzip: bool,
        client: Option<reqwest::Client>,
    ) -> Result<Self, Error> {
        let base = endpoint.trim_end_matches('/');
        let url = format!("{base}/v1/batch");
        reqwest::Url::parse(&url).map_err(|error| {
            Error::Config(format!("endpoint {endpoint:?} is not a URL: {error}"))
        })?;
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {write_key}")).map_err(|_| {
                Error::Config("the write key holds characters not allowed in a header".into())
            })?;
        authorization.set_sensitive(true);
        let client = match client {
            Some(client) => client,
            None => reqwest::Client::builder()
                .user_agent(concat!("tributary-server/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|error| Error::Config(format!("cannot build the HTTP client: {error}")))?,
        };
        Ok(Self {
            client,
            url,
            authorization,
            timeout,
            gzip,
        })
    }

    /// Sends one batch body and says what happened.
    pub(crate) async fn send(&self, body: Vec<u8>) -> UploadOutcome {
        let mut request = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, "application/json");
        let body = if self.gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
            gzip(&body)
        } else {
            body
        };
        let response = match request.body(body).send().await {
            Ok(response) => response,
            Err(error) if error.is_timeout() => return UploadOutcome::TimedOut,
            Err(error) => return UploadOutcome::ConnectionFailed(describe(&error)),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, now()));
        match read_limited(response).await {
            Ok(body) => UploadOutcome::Response {
                status,
                retry_after,
                body,
            },
            Err(error) if error.is_timeout() => UploadOutcome::TimedOut,
            // The status arrived; a body cut short only loses the `rejected` details.
            Err(_) => UploadOutcome::Response {
                status,
                retry_after,
                body: Vec::new(),
            },
        }
    }
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_RESPONSE_BYTES {
            break;
        }
    }
    Ok(body)
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
}

/// The error and its causes on one line (reqwest's top-level text alone is "error sending
/// request"). Write keys travel in a header and never appear here.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_endpoints_that_are_not_urls() {
        let error =
            HttpTransport::new("not a url", "k", Duration::from_secs(1), false, None).unwrap_err();
        assert!(error.to_string().contains("not a URL"), "{error}");
    }
}
