//! AWS mode's router function: Kinesis batches in, each destination's events out (Lambda
//! asynchronous invoke or SQS), partial batch responses. Settings:
//! `tributary_backend::aws::settings`.

use lambda_runtime::{LambdaEvent, service_fn};
use tributary_backend::aws;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk_config = aws::settings::sdk_config().await;
    let router = aws::router::RouterFunction::from_env(&sdk_config)?;
    let router = &router;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            // Read here rather than by the runtime: arrival times to the millisecond.
            let batch = aws::records::kinesis_event(event.payload)?;
            router
                .handle(batch)
                .await
                .map_err(lambda_runtime::Error::from)
        },
    ))
    .await
}
