//! Write keys: from `Authorization: Bearer KEY`, HTTP Basic (the key as user), or a beacon's
//! `write_key` body field; compared in constant time.

use axum::http::{HeaderMap, header};
use base64::Engine;
use subtle::ConstantTimeEq;

use super::errors::ApiError;

/// The keys that may send events.
#[derive(Debug, Clone)]
pub struct WriteKeys {
    keys: Vec<String>,
}

impl WriteKeys {
    /// These keys.
    pub fn new(keys: Vec<String>) -> Self {
        Self { keys }
    }

    /// The key a request's `Authorization` header names, checked; `None` when there is no such
    /// header (the body may carry the key).
    ///
    /// # Errors
    /// `401` for a malformed header or an unknown key.
    pub fn from_headers(&self, headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let value = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
        let presented = if let Some(token) = strip_scheme(value, "Bearer") {
            token.trim().to_owned()
        } else if let Some(encoded) = strip_scheme(value, "Basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    ApiError::unauthorized("the Basic credentials are not base64 of user:password")
                })?;
            decoded
                .split_once(':')
                .map_or(decoded.clone(), |(user, _)| user.to_owned())
        } else {
            return Err(ApiError::unauthorized(
                "use Authorization: Bearer <write key> or Basic with the key as user",
            ));
        };
        self.find(&presented).map(Some).ok_or_else(unknown_key)
    }

    /// The key a beacon carries in its body, checked.
    ///
    /// # Errors
    /// `401` when absent or unknown.
    pub fn from_body(&self, key: Option<&str>) -> Result<&str, ApiError> {
        let key = key.ok_or_else(|| {
            ApiError::unauthorized(
                "missing write key: send Authorization: Bearer <key>, or \"write_key\" in the body",
            )
        })?;
        self.find(key).ok_or_else(unknown_key)
    }

    /// The configured key equal to `presented`; every key is compared in full, in constant time.
    fn find(&self, presented: &str) -> Option<&str> {
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.as_bytes().ct_eq(presented.as_bytes())) {
                found = Some(key.as_str());
            }
        }
        found
    }
}

fn unknown_key() -> ApiError {
    ApiError::unauthorized("unknown write key")
}

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(authorization).unwrap(),
        );
        headers
    }

    #[test]
    fn bearer_basic_and_body_keys() {
        let keys = WriteKeys::new(vec!["k1".into(), "k2".into()]);
        assert_eq!(
            keys.from_headers(&headers("Bearer k2")).unwrap(),
            Some("k2")
        );
        assert_eq!(
            keys.from_headers(&headers("bearer  k1 ")).unwrap(),
            Some("k1")
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("k1:");
        assert_eq!(
            keys.from_headers(&headers(&format!("Basic {basic}")))
                .unwrap(),
            Some("k1")
        );
        let no_colon = base64::engine::general_purpose::STANDARD.encode("k2");
        assert_eq!(
            keys.from_headers(&headers(&format!("Basic {no_colon}")))
                .unwrap(),
            Some("k2")
        );
        assert_eq!(keys.from_headers(&HeaderMap::new()).unwrap(), None);
        assert_eq!(keys.from_body(Some("k1")).unwrap(), "k1");
    }

    #[test]
    fn wrong_keys_are_401() {
        let keys = WriteKeys::new(vec!["k1".into()]);
        for value in ["Bearer k", "Bearer k11", "Token k1", "Basic !!!"] {
            let error = keys.from_headers(&headers(value)).unwrap_err();
            assert_eq!(error.status.as_u16(), 401, "{value}");
        }
        assert_eq!(keys.from_body(None).unwrap_err().status.as_u16(), 401);
        assert_eq!(
            keys.from_body(Some("nope")).unwrap_err().message,
            "unknown write key"
        );
    }
}
