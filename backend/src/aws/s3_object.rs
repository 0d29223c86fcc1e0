//! One conditional read of an S3 object as text: `GetObject` with `If-None-Match` the ETag in
//! hand, the way the router re-reads its rules and its suppression list at every batch (an
//! unchanged object costs a `304` and no body).
//!
//! # Invariants
//! - `Unchanged` only when an ETag was given (S3 answered `304` to the condition).
//! - `Missing` only for S3's `NoSuchKey`; it carries the error the read would otherwise give, so a
//!   caller for which the object must exist reports exactly that.

use super::settings::{self, AwsError};

/// What a read found.
pub(crate) enum ObjectRead {
    /// The object still has the ETag given.
    Unchanged,
    /// There is no such object (the read's error, for callers that need the object).
    Missing(AwsError),
    /// The object's ETag and its body as UTF-8 text.
    Changed {
        /// The ETag of what was read.
        etag: String,
        /// The body.
        text: String,
    },
}

/// Reads `s3://bucket/key` unless it still has `etag`.
///
/// # Errors
/// When S3 refuses the read (other than `304` and `NoSuchKey`), the body cannot be read, or it
/// is not UTF-8.
pub(crate) async fn read_if_changed(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    etag: Option<&str>,
) -> Result<ObjectRead, AwsError> {
    let location = || format!("s3://{bucket}/{key}");
    let result = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_if_none_match(etag.map(str::to_owned))
        .send()
        .await;
    let output = match result {
        Ok(output) => output,
        Err(error) => {
            let status = error
                .raw_response()
                .map(|response| response.status().as_u16());
            let failure = || settings::call_error(&format!("s3 GetObject {}", location()), &error);
            return match status {
                Some(304) if etag.is_some() => Ok(ObjectRead::Unchanged),
                Some(404)
                    if error.as_service_error().is_some_and(
                        aws_sdk_s3::operation::get_object::GetObjectError::is_no_such_key,
                    ) =>
                {
                    Ok(ObjectRead::Missing(failure()))
                }
                _ => Err(failure()),
            };
        }
    };
    let etag = output.e_tag().unwrap_or_default().to_owned();
    let bytes = output
        .body
        .collect()
        .await
        .map_err(|error| AwsError::Call {
            operation: format!("s3 GetObject {}", location()),
            message: format!("reading the body: {error}"),
        })?
        .into_bytes();
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|error| AwsError::Config(format!("{}: not UTF-8 ({error})", location())))?;
    Ok(ObjectRead::Changed { etag, text })
}
