//! The ingest function: `lambda_http` around the same axum router as local mode, writing to
//! Kinesis ([`super::kinesis_sink`]). Behind API Gateway (REST API, every body passed as binary
//! so gzip arrives intact) or a function URL.
//!
//! Write keys come from an SSM parameter (`TRIBUTARY_WRITE_KEYS_PARAMETER`, read once per cold
//! start) or from `TRIBUTARY_WRITE_KEYS`; never from code.
//!
//! There is no socket behind API Gateway: the client's address for `context.ip` is the request
//! context's `sourceIp` (REST API `identity.sourceIp`, HTTP API / function URL
//! `http.sourceIp`), passed to the ingest as a [`ClientAddress`] extension; `X-Forwarded-For`
//! is not read (API Gateway computes `sourceIp` itself). `TRIBUTARY_IP_MODE` sets how much of it
//! is kept (`anonymize` by default).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;

use tributary_server::kinesis::RecordCompression;

use super::kinesis_sink::{KinesisSink, StreamWrites};
use super::settings::{self, AwsError};
use crate::ingest::{ClientAddress, EventSink, IngestState, RateLimiter, WriteKeys};
use crate::ops::metrics::Metrics;
use crate::privacy::{IngestPrivacy, IpMode};

/// What the ingest function is built from.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Keys that may send.
    pub write_keys: Vec<String>,
    /// Origins allowed by CORS.
    pub allowed_origins: Vec<String>,
    /// Events per second per key and instance; 0 = unlimited.
    pub rate_limit_per_key: u32,
    /// How much of the client's address `context.ip` keeps.
    pub ip_mode: IpMode,
}

/// The ingest routes (`POST /v1/batch`, `POST /v1/event`, `GET /healthz`) over `sink`.
pub fn router(sink: Arc<dyn EventSink>, settings: &IngestSettings) -> Router {
    let state = Arc::new(IngestState {
        sink,
        write_keys: WriteKeys::new(settings.write_keys.clone()),
        rate_limiter: (settings.rate_limit_per_key > 0)
            .then(|| RateLimiter::new(settings.rate_limit_per_key)),
        metrics: Arc::new(Metrics::new()),
        rules: None,
        privacy: IngestPrivacy {
            ip_mode: settings.ip_mode,
            ..IngestPrivacy::default()
        },
        // API Gateway hands the function the whole body at once; the bound only matters for a
        // socket (local mode), so it stays at `server.body_timeout`'s default.
        body_timeout: std::time::Duration::from_secs(30),
        // On-demand Lambda serves one request at a time, so the bound never sheds there; on
        // Managed Instances it bounds what the concurrent requests of one execution environment
        // hold (8 MiB: 16 requests of the largest body), and sheds beyond with `503`.
        admission: crate::ingest::Admission::new(
            crate::ingest::admission::DEFAULT_MAX_PENDING_BYTES,
        ),
    });
    crate::ingest::router(state, &settings.allowed_origins).route(
        "/healthz",
        get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
    )
}

/// The ingest as Lambda serves it: [`router`] behind [`from_api_gateway`], its responses
/// buffered into `lambda_http`'s body (which, unlike axum's, can be shared between threads, as
/// `lambda_http::run_concurrent` requires).
pub type LambdaIngest = tower::util::BoxCloneService<
    lambda_http::Request,
    lambda_http::Response<lambda_http::Body>,
    std::convert::Infallible,
>;

/// Wraps the router for `lambda_http::run_concurrent`.
pub fn lambda_service(router: Router) -> LambdaIngest {
    use lambda_http::IntoResponse;
    use tower::ServiceExt;
    let service = tower::util::MapRequest::new(router, from_api_gateway as fn(_) -> _).and_then(
        |response: axum::response::Response| async move { Ok(response.into_response().await) },
    );
    tower::util::BoxCloneService::new(service)
}

/// What the ingest needs from an API Gateway request: the path without the stage
/// ([`without_stage`]) and the client's address ([`with_client_address`]).
pub fn from_api_gateway(request: lambda_http::Request) -> lambda_http::Request {
    with_client_address(without_stage(request))
}

/// Sets the [`ClientAddress`] extension from the request context's source IP (REST API:
/// `identity.sourceIp`; HTTP API and function URLs: `http.sourceIp`). A request without one, or
/// with one that is not an address (API Gateway's test console sends `test-invoke-source-ip`),
/// gets none, and its events no `context.ip` from the connection.
pub fn with_client_address(mut request: lambda_http::Request) -> lambda_http::Request {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    let source_ip = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => context.identity.source_ip.clone(),
        Some(RequestContext::ApiGatewayV2(context)) => context.http.source_ip.clone(),
        _ => None,
    };
    if let Some(address) = source_ip.and_then(|text| text.trim().parse().ok()) {
        request.extensions_mut().insert(ClientAddress(address));
    }
    request
}

/// Routes on the path API Gateway received, without the stage name `lambda_http` puts in front
/// of it (unless `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is set), so the routes are the same
/// whatever the stage is called.
pub fn without_stage(mut request: lambda_http::Request) -> lambda_http::Request {
    use lambda_http::RequestExt;
    let raw = request.raw_http_path().to_owned();
    if raw.starts_with('/') && raw != request.uri().path() {
        let path_and_query = match request.uri().query() {
            Some(query) => format!("{raw}?{query}"),
            None => raw,
        };
        let mut parts = request.uri().clone().into_parts();
        if let Ok(path_and_query) = path_and_query.parse() {
            parts.path_and_query = Some(path_and_query);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }
    request
}

/// Reads the settings from the environment (and the write keys from SSM when a parameter is
/// named) and builds the router, with a Kinesis sink.
///
/// # Errors
/// [`AwsError::Config`] for a missing or unusable setting, [`AwsError::Call`] when the SSM
/// parameter cannot be read.
pub async fn router_from_env(sdk_config: &aws_config::SdkConfig) -> Result<LambdaIngest, AwsError> {
    let stream = settings::required(settings::STREAM_ENV)?;
    let write_keys = match settings::optional(settings::WRITE_KEYS_PARAMETER_ENV) {
        Some(parameter) => write_keys_from_ssm(sdk_config, &parameter).await?,
        None => settings::list(&settings::required(settings::WRITE_KEYS_ENV).map_err(|_| {
            AwsError::Config(format!(
                "neither {} nor {} is set: the ingest has no write keys",
                settings::WRITE_KEYS_PARAMETER_ENV,
                settings::WRITE_KEYS_ENV
            ))
        })?),
    };
    if write_keys.is_empty() {
        return Err(AwsError::Config("the write key list is empty".into()));
    }
    let allowed_origins = settings::list(
        &settings::optional(settings::ALLOWED_ORIGINS_ENV).unwrap_or_else(|| "*".into()),
    );
    let rate_limit_per_key = u32::try_from(settings::number(settings::RATE_LIMIT_ENV, 0)?)
        .map_err(|_| AwsError::Config(format!("{} is too large", settings::RATE_LIMIT_ENV)))?;
    let ip_mode = match settings::optional(settings::IP_MODE_ENV) {
        Some(text) => text
            .trim()
            .parse()
            .map_err(|message| AwsError::Config(format!("{}: {message}", settings::IP_MODE_ENV)))?,
        None => IpMode::default(),
    };
    let put_timeout = Duration::from_millis(settings::number(settings::PUT_TIMEOUT_ENV, 7_000)?);
    if put_timeout.is_zero() {
        return Err(AwsError::Config(format!(
            "{} must be above 0",
            settings::PUT_TIMEOUT_ENV
        )));
    }
    let sink = KinesisSink::new(sdk_config, &stream, put_timeout, stream_writes_from_env()?)
        .await
        .map_err(|error| AwsError::Config(format!("the Kinesis producer: {error}")))?;
    Ok(lambda_service(router(
        Arc::new(sink),
        &IngestSettings {
            write_keys,
            allowed_origins,
            rate_limit_per_key,
            ip_mode,
        },
    )))
}

/// How the ingest writes to the stream: [`StreamWrites::for_concurrency`] of
/// `AWS_LAMBDA_MAX_CONCURRENCY`, with `TRIBUTARY_LINGER_MS`, `TRIBUTARY_RECORD_COMPRESSION` and
/// `TRIBUTARY_AGGREGATE_MAX_BYTES` where set.
///
/// # Errors
/// [`AwsError::Config`] for a value that is not a number, an unknown compression, or an
/// aggregate size Kinesis cannot take.
pub fn stream_writes_from_env() -> Result<StreamWrites, AwsError> {
    let max_concurrency = settings::number(settings::MAX_CONCURRENCY_ENV, 1)?;
    let mut writes = StreamWrites::for_concurrency(usize::try_from(max_concurrency).unwrap_or(1));
    if let Some(text) = settings::optional(settings::RECORD_COMPRESSION_ENV) {
        writes.compression = match text.trim() {
            "gzip" => RecordCompression::Gzip,
            "none" => RecordCompression::None,
            other => {
                return Err(AwsError::Config(format!(
                    "{}={other:?}: expected gzip or none",
                    settings::RECORD_COMPRESSION_ENV
                )));
            }
        };
        if writes.compression == RecordCompression::None {
            writes.aggregate_max_bytes = tributary_core::kpl::DEFAULT_MAX_AGGREGATE_BYTES;
        }
    }
    let linger_ms = u64::try_from(writes.linger.as_millis()).unwrap_or(u64::MAX);
    writes.linger = Duration::from_millis(settings::number(settings::LINGER_ENV, linger_ms)?);
    let bytes = settings::number(
        settings::AGGREGATE_MAX_BYTES_ENV,
        writes.aggregate_max_bytes as u64,
    )?;
    let limit = tributary_core::kpl::MAX_KINESIS_RECORD_BYTES as u64 - 1024;
    if !(64..=limit).contains(&bytes) {
        return Err(AwsError::Config(format!(
            "{}={bytes}: must be 64..={limit}",
            settings::AGGREGATE_MAX_BYTES_ENV
        )));
    }
    writes.aggregate_max_bytes = bytes as usize;
    Ok(writes)
}

async fn write_keys_from_ssm(
    sdk_config: &aws_config::SdkConfig,
    parameter: &str,
) -> Result<Vec<String>, AwsError> {
    let output = aws_sdk_ssm::Client::new(sdk_config)
        .get_parameter()
        .name(parameter)
        .with_decryption(true)
        .send()
        .await
        .map_err(|error| settings::call_error("ssm GetParameter", &error))?;
    let value = output
        .parameter()
        .and_then(|parameter| parameter.value())
        .unwrap_or_default();
    Ok(settings::list(value))
}
