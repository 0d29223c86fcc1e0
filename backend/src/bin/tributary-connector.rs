//! AWS mode's connector function: the router's batches (asynchronous invoke or SQS) delivered
//! to the configured destination, with retries, then its SQS DLQ. Settings:
//! `tributary_backend::aws::settings`.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use tributary_backend::aws;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk_config = aws::settings::sdk_config().await;
    let connector = aws::connector::ConnectorFunction::from_env(&sdk_config)?;
    let connector = &connector;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = aws::connector::deadline_from_unix_millis(event.context.deadline);
        connector
            .handle(event.payload, deadline)
            .await
            .map_err(lambda_runtime::Error::from)
    }))
    .await
}
