//! AWS mode's ingest function: the axum router of local mode behind `lambda_http`, writing
//! accepted events to Kinesis. Settings: `tributary_backend::aws::settings`.
//!
//! On Lambda Managed Instances (`AWS_LAMBDA_MAX_CONCURRENCY` > 1) one execution environment
//! serves that many requests at once, and their events share Kinesis records (group commit,
//! `tributary_backend::aws::kinesis_sink`); elsewhere it serves one request at a time.

use tributary_backend::aws;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let sdk_config = aws::settings::sdk_config().await;
    let router = aws::ingest::router_from_env(&sdk_config).await?;
    lambda_http::run_concurrent(router).await
}
