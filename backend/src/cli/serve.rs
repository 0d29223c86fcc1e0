//! `tributary serve`.

use super::ServeArgs;
use crate::config::{Config, ConfigSource};
use crate::local::LocalPipeline;

pub(super) async fn run(args: ServeArgs) -> Result<(), String> {
    let config = Config::load(args.config.as_deref()).map_err(|error| error.to_string())?;
    let stream = match args.source.as_deref() {
        None => None,
        Some(source) => match source.strip_prefix("kinesis:") {
            Some(stream) if !stream.is_empty() => Some(stream.to_owned()),
            _ => {
                return Err(format!(
                    "--source {source:?}: expected kinesis:STREAM (a Kinesis stream's name)"
                ));
            }
        },
    };
    let pipeline = LocalPipeline::start(&config, args.listen.as_deref())
        .await
        .map_err(|error| error.to_string())?;
    let consumer = match stream {
        Some(stream) => Some(start_source(&config, &pipeline, stream).await?),
        None => None,
    };
    let source = match &config.source {
        ConfigSource::File(path) => path.display().to_string(),
        ConfigSource::BuiltIn(_) => "built-in defaults (samples/tributary.toml)".into(),
        ConfigSource::Environment { variable, .. } => format!("${variable}"),
    };
    tracing::info!(
        message = "tributary serve started",
        config = %source,
        data_dir = %config.storage.data_dir.display(),
        destinations = config.destinations.len()
    );
    println!("tributary: listening on http://{}", pipeline.address);
    println!("tributary: status page http://{}/", pipeline.address);
    println!("tributary: data in {}", config.storage.data_dir.display());

    let shutdown = pipeline.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!(message = "shutting down");
        shutdown.cancel();
    });
    pipeline.wait().await;
    println!("tributary: stopped");
    match consumer {
        Some(consumer) => match consumer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error),
            Err(error) => Err(format!("the Kinesis source failed: {error}")),
        },
        None => Ok(()),
    }
}

type SourceTask = tokio::task::JoinHandle<Result<(), String>>;

/// Starts the Kinesis consumer; when it fails, the whole server stops with its error.
#[cfg(feature = "aws")]
async fn start_source(
    config: &Config,
    pipeline: &LocalPipeline,
    stream: String,
) -> Result<SourceTask, String> {
    use crate::aws::stream_source::KinesisSource;
    let sdk_config = crate::aws::settings::sdk_config().await;
    let source = KinesisSource::new(
        aws_sdk_kinesis::Client::new(&sdk_config),
        stream.clone(),
        config.storage.data_dir.clone(),
        pipeline.log().clone(),
    );
    let shutdown = pipeline.shutdown_token();
    println!("tributary: consuming Kinesis stream {stream}");
    Ok(tokio::spawn(async move {
        let result = source.run(shutdown.clone()).await;
        match result {
            Ok(counts) => {
                tracing::info!(
                    message = "Kinesis source stopped",
                    records = counts.records,
                    appended = counts.appended,
                    duplicates = counts.duplicates,
                    poison = counts.poison
                );
                Ok(())
            }
            Err(error) => {
                tracing::error!(message = "the Kinesis source failed; stopping", %error);
                shutdown.cancel();
                Err(error.to_string())
            }
        }
    }))
}

#[cfg(not(feature = "aws"))]
async fn start_source(
    _config: &Config,
    _pipeline: &LocalPipeline,
    _stream: String,
) -> Result<SourceTask, String> {
    Err(
        "--source kinesis:… needs AWS support: this tributary was built without the `aws` \
         feature (cargo install with --features aws)"
            .into(),
    )
}

async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
