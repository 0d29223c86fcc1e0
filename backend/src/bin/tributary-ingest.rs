//! AWS mode's ingest function: the axum router of local mode behind `lambda_http`, writing
//! accepted events to Kinesis. Settings: `tributary_backend::aws::settings`.

use tributary_backend::aws;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let sdk_config = aws::settings::sdk_config().await;
    let router = aws::ingest::router_from_env(&sdk_config).await?;
    lambda_http::run(router).await
}
