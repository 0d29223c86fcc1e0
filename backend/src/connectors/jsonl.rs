//! One envelope per line, appended to a file (the local stand-in for an S3/Firehose backup).
//!
//! Each batch is written with one `write` call on a file opened for appending and then synced,
//! so lines from concurrent writers (a running `serve` and a `dlq redrive`) never interleave.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Connector, Delivery, DeliveryFuture, Failure, OutgoingEvent};

/// Appends batches to a JSON Lines file.
pub struct JsonlConnector {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl JsonlConnector {
    /// Opens (creating if needed) the file for appending.
    ///
    /// # Errors
    /// A message naming the file when it cannot be opened.
    pub fn open(path: &Path) -> Result<Self, String> {
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)
                .map_err(|error| format!("cannot create {}: {error}", folder.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|error| format!("cannot open {} for appending: {error}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(file)),
        })
    }
}

impl Connector for JsonlConnector {
    fn deliver<'a>(&'a self, events: &'a [OutgoingEvent]) -> DeliveryFuture<'a> {
        let mut lines =
            String::with_capacity(events.iter().map(|event| event.json.len() + 1).sum());
        for event in events {
            lines.push_str(&event.json);
            lines.push('\n');
        }
        let file = self.file.clone();
        let path = self.path.clone();
        Box::pin(async move {
            let written = tokio::task::spawn_blocking(move || {
                let mut file = file
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                file.write_all(lines.as_bytes())?;
                file.sync_data()
            })
            .await;
            match written {
                Ok(Ok(())) => Delivery::Delivered,
                Ok(Err(error)) => Delivery::Failed(Failure::retryable(format!(
                    "cannot append to {}: {error}",
                    path.display()
                ))),
                Err(error) => Delivery::Failed(Failure::retryable(format!(
                    "the file writer stopped: {error}"
                ))),
            }
        })
    }
}
