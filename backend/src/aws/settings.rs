//! The environment variables of the three functions (set by `backend/template.yaml`), and the
//! AWS configuration every client is built from (the standard chain: environment, profile,
//! role; `AWS_ENDPOINT_URL` points every client at another endpoint, such as moto in tests).

/// Ingest: the Kinesis stream's name.
pub const STREAM_ENV: &str = "TRIBUTARY_STREAM";
/// Ingest: the name of the SSM parameter holding the write keys, comma-separated.
pub const WRITE_KEYS_PARAMETER_ENV: &str = "TRIBUTARY_WRITE_KEYS_PARAMETER";
/// Ingest: the write keys themselves, comma-separated (when no SSM parameter is named).
pub const WRITE_KEYS_ENV: &str = crate::config::WRITE_KEYS_ENV;
/// Ingest: origins allowed by CORS, comma-separated (default `*`).
pub const ALLOWED_ORIGINS_ENV: &str = "TRIBUTARY_ALLOWED_ORIGINS";
/// Ingest: how long the events of one request may take to be put, in milliseconds (default
/// 7000; keep it under the function's timeout).
pub const PUT_TIMEOUT_ENV: &str = "TRIBUTARY_PUT_TIMEOUT_MS";
/// Ingest: events per second per write key and function instance (default 0, unlimited).
pub const RATE_LIMIT_ENV: &str = "TRIBUTARY_RATE_LIMIT_PER_KEY";
/// Ingest: how long a request's events may wait to share Kinesis records with other requests
/// being put at the same time, in milliseconds (default 20 when the instance serves several
/// requests at once, `AWS_LAMBDA_MAX_CONCURRENCY` > 1; else 0).
pub const LINGER_ENV: &str = "TRIBUTARY_LINGER_MS";
/// Ingest: `gzip` (default) or `none`: whether Kinesis records are compressed.
pub const RECORD_COMPRESSION_ENV: &str = "TRIBUTARY_RECORD_COMPRESSION";
/// Ingest: the most bytes of one KPL aggregate before compression (default 131072 with gzip,
/// 51200 without).
pub const AGGREGATE_MAX_BYTES_ENV: &str = "TRIBUTARY_AGGREGATE_MAX_BYTES";
/// Set by Lambda on Managed Instances: how many requests one execution environment serves at
/// once (unset: one).
pub const MAX_CONCURRENCY_ENV: &str = "AWS_LAMBDA_MAX_CONCURRENCY";
/// Router: the bucket of the rules file.
pub const RULES_BUCKET_ENV: &str = "TRIBUTARY_RULES_BUCKET";
/// Router: the key of the rules file (default `rules.json`).
pub const RULES_KEY_ENV: &str = "TRIBUTARY_RULES_KEY";
/// Router and connector: the key of the suppression list (default `suppressions.json`), in
/// the rules bucket for the router and in `TRIBUTARY_SUPPRESSIONS_BUCKET` for the connector.
pub const SUPPRESSIONS_KEY_ENV: &str = "TRIBUTARY_SUPPRESSIONS_KEY";
/// Connector: the bucket of the suppression list (unset: the connector does not check it).
pub const SUPPRESSIONS_BUCKET_ENV: &str = "TRIBUTARY_SUPPRESSIONS_BUCKET";
/// The suppression list's key when none is set.
pub const DEFAULT_SUPPRESSIONS_KEY: &str = "suppressions.json";
/// Ingest: how much of the client's address `context.ip` keeps: `full`, `anonymize` (default)
/// or `drop`.
pub const IP_MODE_ENV: &str = "TRIBUTARY_IP_MODE";
/// Router: the URL of its dead-letter queue (poison records, refused batches).
pub const ROUTER_DLQ_URL_ENV: &str = "TRIBUTARY_ROUTER_DLQ_URL";
/// Connector: the destination it delivers to (a `[destinations.NAME]` of its configuration).
pub const DESTINATION_ENV: &str = "TRIBUTARY_DESTINATION";
/// Connector: its configuration, `tributary.toml` text.
pub const CONNECTOR_CONFIG_ENV: &str = "TRIBUTARY_CONNECTOR_CONFIG";
/// Connector: the URL of its dead-letter queue.
pub const CONNECTOR_DLQ_URL_ENV: &str = "TRIBUTARY_CONNECTOR_DLQ_URL";

/// Why a function cannot start or an AWS call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AwsError {
    /// A setting is missing or unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// An AWS call failed.
    #[error("{operation}: {message}")]
    Call {
        /// The operation, e.g. `s3 GetObject`.
        operation: String,
        /// The service's code and message, or the connection error.
        message: String,
    },
}

/// The value of a required variable.
///
/// # Errors
/// [`AwsError::Config`] naming the variable when it is unset or empty.
pub fn required(variable: &str) -> Result<String, AwsError> {
    match std::env::var(variable) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(AwsError::Config(format!(
            "the environment variable {variable} is not set"
        ))),
    }
}

/// The value of an optional variable (`None` when unset or empty).
pub fn optional(variable: &str) -> Option<String> {
    std::env::var(variable)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// A number from an optional variable, else `default`.
///
/// # Errors
/// [`AwsError::Config`] when the value is not a number.
pub fn number(variable: &str, default: u64) -> Result<u64, AwsError> {
    match optional(variable) {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| AwsError::Config(format!("{variable}={text:?} is not a whole number"))),
    }
}

/// A comma-separated list, trimmed, without empty items.
pub fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The AWS configuration from the standard chain.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// An [`AwsError::Call`] from an SDK error: the service's code and message, or the chain of
/// causes of a connection error.
pub fn call_error<E, R>(operation: &str, error: &aws_sdk_sqs::error::SdkError<E, R>) -> AwsError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    AwsError::Call {
        operation: operation.to_owned(),
        message: describe(error),
    }
}

/// `Code: message` of a service error, or the chain of causes of any other failure.
pub fn describe<E, R>(error: &aws_sdk_sqs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_sqs::error::ProvideErrorMetadata;
    match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => aws_sdk_sqs::error::DisplayErrorContext(error).to_string(),
    }
}
