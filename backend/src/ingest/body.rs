//! Content type, content encoding, and reading the body within its size limit.
//!
//! The limit applies to the decompressed body and is enforced while reading: a body (or a gzip
//! bomb) over it is refused as soon as the limit is crossed, before anything is parsed.

use std::io::Read;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use flate2::read::GzDecoder;
use http_body_util::BodyExt;

use super::errors::ApiError;

/// What a gzip stream may take beyond what it holds (its header and trailer, generously).
const GZIP_FRAMING: usize = 1024;

/// How the body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// As is.
    Identity,
    /// `Content-Encoding: gzip`.
    Gzip,
}

/// Accepts `application/json`, `text/plain` (beacons) and a missing `Content-Type` (read as
/// JSON), with any parameters such as `charset`.
///
/// # Errors
/// `415` for any other type.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let value = value.to_str().unwrap_or("");
    let media_type = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media_type.as_str() {
        "application/json" | "text/plain" => Ok(()),
        _ => Err(ApiError::unsupported_media_type(format!(
            "Content-Type {value:?} is not accepted: use application/json (or text/plain for beacons)"
        ))),
    }
}

/// Reads `Content-Encoding`.
///
/// # Errors
/// `415` for anything but `gzip` or `identity`.
pub fn content_encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    match value
        .to_str()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        other => Err(ApiError::unsupported_media_type(format!(
            "Content-Encoding {other:?} is not accepted: send gzip or no encoding"
        ))),
    }
}

/// The body's size as its `Content-Length` declares it (compressed, for gzip), if it does.
pub fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The most bytes a body may take on the wire for `limit` bytes of content: a gzip stream is
/// never meaningfully larger than what it holds, so the same plus its header and trailer.
fn raw_limit(encoding: Encoding, limit: usize) -> usize {
    match encoding {
        Encoding::Identity => limit,
        Encoding::Gzip => limit + GZIP_FRAMING,
    }
}

/// Refuses a body whose `Content-Length` is already over what `limit` allows on the wire
/// (`limit` itself, or 1 KiB more for a gzip stream's header and trailer), before any of it is
/// read.
///
/// # Errors
/// `413`.
pub fn check_declared_length(
    declared: usize,
    encoding: Encoding,
    limit: usize,
) -> Result<(), ApiError> {
    if declared > raw_limit(encoding, limit) {
        Err(ApiError::body_too_large(limit))
    } else {
        Ok(())
    }
}

/// Reads the whole body, decompressing gzip, and refuses it as soon as it passes `limit` bytes.
///
/// # Errors
/// `413` over the limit; `400` for a corrupt gzip stream or a broken connection.
pub async fn read_limited(
    body: Body,
    encoding: Encoding,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let mut body = body;
    let mut raw = Vec::new();
    let most_raw = raw_limit(encoding, limit);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            ApiError::invalid_body(format!("the body could not be read: {error}"))
        })?;
        if let Some(data) = frame.data_ref() {
            if raw.len() + data.len() > most_raw {
                return Err(ApiError::body_too_large(limit));
            }
            raw.extend_from_slice(data);
        }
    }
    match encoding {
        Encoding::Identity => Ok(raw),
        Encoding::Gzip => {
            let mut decoded = Vec::with_capacity(raw.len() * 4);
            let read = GzDecoder::new(&raw[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut decoded)
                .map_err(|error| {
                    ApiError::invalid_encoding(format!("the gzip body is corrupt: {error}"))
                })?;
            if read > limit {
                return Err(ApiError::body_too_large(limit));
            }
            Ok(decoded)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn content_types() {
        assert!(check_content_type(&HeaderMap::new()).is_ok());
        assert!(
            check_content_type(&with(
                header::CONTENT_TYPE,
                "application/json; charset=utf-8"
            ))
            .is_ok()
        );
        assert!(
            check_content_type(&with(header::CONTENT_TYPE, "text/plain;charset=UTF-8")).is_ok()
        );
        let error = check_content_type(&with(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        ))
        .unwrap_err();
        assert_eq!(error.status.as_u16(), 415);
        assert_eq!(
            content_encoding(&with(header::CONTENT_ENCODING, "gzip")).unwrap(),
            Encoding::Gzip
        );
        assert_eq!(
            content_encoding(&with(header::CONTENT_ENCODING, "br"))
                .unwrap_err()
                .status
                .as_u16(),
            415
        );
    }

    #[tokio::test]
    async fn limits_apply_after_decompression() {
        let ok = vec![b'a'; 1000];
        assert_eq!(
            read_limited(Body::from(ok.clone()), Encoding::Identity, 1000)
                .await
                .unwrap(),
            ok
        );
        let over = read_limited(Body::from(vec![b'a'; 1001]), Encoding::Identity, 1000)
            .await
            .unwrap_err();
        assert_eq!(over.status.as_u16(), 413);

        // A small gzip body that expands past the limit (a gzip bomb) is refused.
        let bomb = gzip(&vec![b'a'; 10 * 1024 * 1024]);
        assert!(bomb.len() < 20_000);
        let error = read_limited(Body::from(bomb), Encoding::Gzip, 512 * 1024)
            .await
            .unwrap_err();
        assert_eq!(error.status.as_u16(), 413);
        let fine = read_limited(Body::from(gzip(&ok)), Encoding::Gzip, 1000)
            .await
            .unwrap();
        assert_eq!(fine, ok);
        let corrupt = read_limited(Body::from(b"not gzip".to_vec()), Encoding::Gzip, 1000)
            .await
            .unwrap_err();
        assert_eq!(corrupt.code, "invalid_encoding");
    }
}
