//! The suppression list in S3 (`docs/PRIVACY.md`'s document, beside the rules): read by the
//! router (and the connector) like the rules — at the first batch, then with a conditional
//! `GetObject` (`If-None-Match` the ETag in hand) at every batch — and written by
//! `tributary privacy … --s3 s3://BUCKET/KEY` with a read-modify-write guarded by the ETag.
//!
//! # Invariants
//! - A missing object is an empty list (nobody suppressed); a malformed one is an error, never
//!   an empty list (that would silently deliver suppressed users' events again). Once a list has
//!   loaded, a later broken or unreadable object keeps the last good list in force, logged at
//!   every check.
//! - A write never loses a concurrent one: `PutObject` carries `If-Match` the ETag read (or
//!   `If-None-Match: *` when there was no object), and a refused write is read, changed and
//!   written again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use super::s3_object::{ObjectRead, read_if_changed};
use super::settings::{self, AwsError};
use crate::privacy::store::ListFuture;
use crate::privacy::{
    ListChange, PrivacyError, SuppressionIndex, SuppressionList, SuppressionStore,
};

/// How many times a write refused for a concurrent change is tried again.
const WRITE_ATTEMPTS: u32 = 8;

/// The list at one S3 object.
#[derive(Debug)]
pub struct S3SuppressionList {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    /// The ETag and index in force (`None` as ETag: the object did not exist).
    cached: Mutex<Option<(Option<String>, Arc<SuppressionIndex>)>>,
}

/// What [`S3SuppressionList::store`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Written; the new ETag.
    Stored(String),
    /// The object changed (or appeared, or went away) since it was read: nothing written.
    Conflict,
}

impl S3SuppressionList {
    /// The list at `s3://bucket/key`, not read yet.
    pub fn new(client: aws_sdk_s3::Client, bucket: String, key: String) -> Self {
        Self {
            client,
            bucket,
            key,
            cached: Mutex::new(None),
        }
    }

    /// The list at `location` (`s3://BUCKET/KEY`).
    ///
    /// # Errors
    /// [`AwsError::Config`] when `location` is not of that form.
    pub fn at(client: aws_sdk_s3::Client, location: &str) -> Result<Self, AwsError> {
        let (bucket, key) = parse_location(location)?;
        Ok(Self::new(client, bucket, key))
    }

    /// Where the list is, as `s3://bucket/key`.
    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// The list in force now, for checking events: the cached one while the object's ETag is
    /// unchanged, else the object read again (empty when there is no object).
    ///
    /// # Errors
    /// When no list has loaded yet and the object cannot be read or does not parse.
    pub async fn current(&self) -> Result<Arc<SuppressionIndex>, AwsError> {
        let mut cached = self.cached.lock().await;
        let etag = cached.as_ref().and_then(|(etag, _)| etag.clone());
        match (self.fetch(etag.as_deref()).await, &*cached) {
            (Ok(Fetched::Unchanged), Some((_, index))) => Ok(index.clone()),
            (Ok(Fetched::Missing), Some((None, index))) => Ok(index.clone()),
            (Ok(Fetched::Missing), _) => {
                tracing::info!(
                    message = "no suppression list; nobody is suppressed",
                    location = %self.location()
                );
                let index = Arc::new(SuppressionIndex::default());
                *cached = Some((None, index.clone()));
                Ok(index)
            }
            (Ok(Fetched::Changed(etag, list)), _) => {
                tracing::info!(
                    message = "suppression list loaded",
                    location = %self.location(),
                    etag = %etag,
                    suppressed = list.suppressed.len(),
                    deleted = list.deleted.len()
                );
                let index = Arc::new(list.index());
                *cached = Some((Some(etag), index.clone()));
                Ok(index)
            }
            (Err(error), Some((etag, index))) => {
                tracing::error!(
                    message = "cannot refresh the suppression list; keeping the last good one",
                    location = %self.location(),
                    etag = etag.as_deref().unwrap_or("(none)"),
                    %error
                );
                Ok(index.clone())
            }
            (Ok(Fetched::Unchanged), None) => Err(AwsError::Config(format!(
                "{}: S3 answered 304 Not Modified to the first read",
                self.location()
            ))),
            (Err(error), None) => Err(error),
        }
    }

    /// The list as stored, with its ETag (`None` and an empty list when there is no object).
    ///
    /// # Errors
    /// When the object cannot be read or does not parse.
    pub async fn load(&self) -> Result<(Option<String>, SuppressionList), AwsError> {
        match self.fetch(None).await? {
            Fetched::Changed(etag, list) => Ok((Some(etag), list)),
            Fetched::Missing | Fetched::Unchanged => Ok((None, SuppressionList::default())),
        }
    }

    /// Writes `list` if the object still has `expected_etag` (`None`: if there is still no
    /// object).
    ///
    /// # Errors
    /// When S3 refuses the write for another reason than the condition.
    pub async fn store(
        &self,
        list: &SuppressionList,
        expected_etag: Option<&str>,
    ) -> Result<StoreOutcome, AwsError> {
        let mut body = list.to_json();
        body.push('\n');
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .content_type("application/json")
            .body(body.into_bytes().into());
        let request = match expected_etag {
            Some(etag) => request.if_match(etag),
            None => request.if_none_match("*"),
        };
        match request.send().await {
            Ok(output) => Ok(StoreOutcome::Stored(
                output.e_tag().unwrap_or_default().to_owned(),
            )),
            Err(error) => {
                let status = error
                    .raw_response()
                    .map(|response| response.status().as_u16());
                // 412: the ETag no longer matches / an object appeared; 409: a concurrent
                // conditional write; 404: If-Match on an object that was deleted meanwhile.
                if matches!(status, Some(412 | 409))
                    || (status == Some(404) && expected_etag.is_some())
                {
                    return Ok(StoreOutcome::Conflict);
                }
                Err(settings::call_error(
                    &format!("s3 PutObject {}", self.location()),
                    &error,
                ))
            }
        }
    }

    /// Reads the list, applies `change` and writes it back, again from the read when another
    /// writer came first; returns the list written.
    ///
    /// # Errors
    /// When the object cannot be read, does not parse (it is never overwritten then), cannot be
    /// written, or kept changing under the writes.
    pub async fn update(
        &self,
        change: impl Fn(&mut SuppressionList),
    ) -> Result<SuppressionList, AwsError> {
        for attempt in 0..WRITE_ATTEMPTS {
            let (etag, mut list) = self.load().await?;
            change(&mut list);
            match self.store(&list, etag.as_deref()).await? {
                StoreOutcome::Stored(_) => return Ok(list),
                StoreOutcome::Conflict => {
                    tracing::info!(
                        message = "the suppression list changed while it was written; again",
                        location = %self.location(),
                        attempt
                    );
                    let jitter = fastrand::u64(0..50);
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt) + jitter))
                        .await;
                }
            }
        }
        Err(AwsError::Config(format!(
            "{}: the object kept changing during {WRITE_ATTEMPTS} writes; nothing was changed",
            self.location()
        )))
    }

    /// The object, unless it still has `etag`.
    async fn fetch(&self, etag: Option<&str>) -> Result<Fetched, AwsError> {
        match read_if_changed(&self.client, &self.bucket, &self.key, etag).await? {
            ObjectRead::Unchanged => Ok(Fetched::Unchanged),
            ObjectRead::Missing(_) => Ok(Fetched::Missing),
            ObjectRead::Changed { etag, text } => {
                let list = SuppressionList::from_json(&text).map_err(|message| {
                    AwsError::Config(format!("{}: {message}", self.location()))
                })?;
                Ok(Fetched::Changed(etag, list))
            }
        }
    }
}

impl SuppressionStore for S3SuppressionList {
    fn location(&self) -> String {
        S3SuppressionList::location(self)
    }

    fn load(&self) -> ListFuture<'_> {
        Box::pin(async move {
            S3SuppressionList::load(self)
                .await
                .map(|(_, list)| list)
                .map_err(|error| self.privacy_error(&error))
        })
    }

    fn update(&self, change: ListChange) -> ListFuture<'_> {
        Box::pin(async move {
            S3SuppressionList::update(self, |list| change(list))
                .await
                .map_err(|error| self.privacy_error(&error))
        })
    }
}

impl S3SuppressionList {
    fn privacy_error(&self, error: &AwsError) -> PrivacyError {
        PrivacyError::Io {
            path: self.location(),
            message: error.to_string(),
        }
    }
}

/// What a read found.
enum Fetched {
    /// The object still has the ETag in hand.
    Unchanged,
    /// There is no object.
    Missing,
    /// The object, with its ETag.
    Changed(String, SuppressionList),
}

/// `s3://BUCKET/KEY` as bucket and key.
///
/// # Errors
/// [`AwsError::Config`] naming what is missing.
pub fn parse_location(location: &str) -> Result<(String, String), AwsError> {
    let unusable = |why: &str| {
        AwsError::Config(format!(
            "{location:?} is not an S3 object location ({why}): write s3://BUCKET/KEY"
        ))
    };
    let rest = location
        .strip_prefix("s3://")
        .ok_or_else(|| unusable("no s3:// in front"))?;
    let (bucket, key) = rest
        .split_once('/')
        .ok_or_else(|| unusable("no key after the bucket"))?;
    if bucket.is_empty() {
        return Err(unusable("no bucket"));
    }
    if key.is_empty() || key.ends_with('/') {
        return Err(unusable("no key after the bucket"));
    }
    Ok((bucket.to_owned(), key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_a_bucket_and_a_key() {
        assert_eq!(
            parse_location("s3://rules-bucket/privacy/suppressions.json").unwrap(),
            ("rules-bucket".into(), "privacy/suppressions.json".into())
        );
        for bad in [
            "rules-bucket/suppressions.json",
            "s3://rules-bucket",
            "s3://rules-bucket/",
            "s3:///suppressions.json",
            "s3://bucket/folder/",
        ] {
            let error = parse_location(bad).unwrap_err().to_string();
            assert!(error.contains("s3://BUCKET/KEY"), "{bad}: {error}");
        }
    }
}
