//! The routing rules in S3 (bucket and key from the router's environment): read at the first
//! batch, then checked at every batch with a conditional `GetObject` (`If-None-Match` the ETag
//! in hand), so a changed file is picked up at the next batch and an unchanged one costs a `304`.
//!
//! # Invariants
//! - Once rules have loaded, a rules file that is later broken, missing or unreadable never
//!   stops routing: the last good rules stay in use and the problem is logged at every check.
//! - A rule whose `destination_arn` is neither a Lambda function ARN nor an SQS queue ARN is an
//!   error at load (the router could never deliver there).

use std::sync::Arc;

use tokio::sync::Mutex;

use super::destinations::DestinationArn;
use super::s3_object::{ObjectRead, read_if_changed};
use super::settings::AwsError;
use crate::routing::RoutingRules;

/// Rules loaded from one S3 object.
#[derive(Debug)]
pub struct S3Rules {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    cached: Mutex<Option<(String, Arc<RoutingRules>)>>,
}

impl S3Rules {
    /// Rules at `s3://bucket/key`, not read yet.
    pub fn new(client: aws_sdk_s3::Client, bucket: String, key: String) -> Self {
        Self {
            client,
            bucket,
            key,
            cached: Mutex::new(None),
        }
    }

    /// Where the rules are, as `s3://bucket/key`.
    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// The rules now: the cached ones when the object's ETag is unchanged, else the object read
    /// again.
    ///
    /// # Errors
    /// When no rules have loaded yet and the object cannot be read or is not a valid rules file.
    pub async fn current(&self) -> Result<Arc<RoutingRules>, AwsError> {
        let mut cached = self.cached.lock().await;
        match (
            self.fetch(cached.as_ref().map(|(etag, _)| etag.as_str()))
                .await,
            &*cached,
        ) {
            (Ok(None), Some((_, rules))) => Ok(rules.clone()),
            (Ok(Some((etag, rules))), _) => {
                tracing::info!(
                    message = "routing rules loaded",
                    location = %self.location(),
                    etag = %etag,
                    rules = rules.rules().len()
                );
                let rules = Arc::new(rules);
                *cached = Some((etag, rules.clone()));
                Ok(rules)
            }
            (Err(error), Some((etag, rules))) => {
                tracing::error!(
                    message = "cannot refresh the routing rules; keeping the last good ones",
                    location = %self.location(),
                    etag = %etag,
                    %error
                );
                Ok(rules.clone())
            }
            (Ok(None), None) => Err(AwsError::Config(format!(
                "{}: S3 answered 304 Not Modified to the first read",
                self.location()
            ))),
            (Err(error), None) => Err(error),
        }
    }

    /// `Ok(None)` when the object still has `etag`.
    async fn fetch(&self, etag: Option<&str>) -> Result<Option<(String, RoutingRules)>, AwsError> {
        match read_if_changed(&self.client, &self.bucket, &self.key, etag).await? {
            ObjectRead::Unchanged => Ok(None),
            ObjectRead::Missing(error) => Err(error),
            ObjectRead::Changed { etag, text } => Ok(Some((etag, parse(&text, &self.location())?))),
        }
    }
}

/// Parses a rules file for the router: the article's format, and every `destination_arn` a
/// Lambda function or an SQS queue.
///
/// # Errors
/// [`AwsError::Config`] with `LOCATION:LINE:COLUMN: message`, or naming the rule whose ARN the
/// router cannot send to.
pub fn parse(text: &str, location: &str) -> Result<RoutingRules, AwsError> {
    let rules =
        RoutingRules::parse(text, location).map_err(|error| AwsError::Config(error.to_string()))?;
    for rule in rules.rules() {
        DestinationArn::parse(&rule.destination_arn).map_err(|message| {
            AwsError::Config(format!(
                "{location}: the rule for {:?}: {message}",
                rule.destination_name
            ))
        })?;
    }
    Ok(rules)
}
