//! `tributary serve`.

use super::ServeArgs;
use crate::config::{Config, ConfigSource};
use crate::local::LocalPipeline;

pub(super) async fn run(args: ServeArgs) -> Result<(), String> {
    let config = Config::load(args.config.as_deref()).map_err(|error| error.to_string())?;
    let pipeline = LocalPipeline::start(&config, args.listen.as_deref())
        .await
        .map_err(|error| error.to_string())?;
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
    Ok(())
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
