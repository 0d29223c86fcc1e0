//! One envelope per line, appended to a file (the local stand-in for an S3/Firehose backup).
//!
//! # Invariants
//! - Each batch is written with one `write` call on a file opened for appending and then
//!   synced, under an exclusive lock on the file (`flock`), so lines from concurrent writers (a
//!   running `serve` and a `dlq redrive`) never interleave.
//! - A privacy deletion ([`JsonlConnector::erase`]) writes the kept lines to a temporary file
//!   and renames it over the original while holding the original's lock. A writer that then
//!   gets the lock sees that the path names another file and reopens it, so no batch is written
//!   to the replaced file and lost.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Connector, Delivery, DeliveryFuture, Erasure, ErasureFuture, Failure, OutgoingEvent};
use crate::privacy::SubjectSet;

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
        let file = open_for_append(path)
            .map_err(|error| format!("cannot open {} for appending: {error}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(file)),
        })
    }
}

fn open_for_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Whether `file` is still the file at `path` (a deletion may have replaced it).
fn is_current(file: &File, path: &Path) -> std::io::Result<bool> {
    let open = file.metadata()?;
    match std::fs::metadata(path) {
        Ok(named) => Ok(named.ino() == open.ino() && named.dev() == open.dev()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

/// Takes the exclusive `flock` on `file`, waiting for it.
fn lock(file: &File) -> std::io::Result<()> {
    rustix::fs::flock(file, rustix::fs::FlockOperation::LockExclusive).map_err(Into::into)
}

fn unlock(file: &File) -> std::io::Result<()> {
    rustix::fs::flock(file, rustix::fs::FlockOperation::Unlock).map_err(Into::into)
}

/// Appends `lines` under the file lock, reopening the path first when it names another file.
fn append(file: &mut File, path: &Path, lines: &[u8]) -> std::io::Result<()> {
    loop {
        lock(file)?;
        if is_current(file, path)? {
            break;
        }
        unlock(file)?;
        *file = open_for_append(path)?;
    }
    let written = file.write_all(lines).and_then(|()| file.sync_data());
    unlock(file)?;
    written
}

/// Rewrites the file at `path` without the lines `subjects` match; returns how many went.
fn erase_lines(path: &Path, subjects: &SubjectSet) -> std::io::Result<u64> {
    let original = loop {
        let original = match File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(error) => return Err(error),
        };
        lock(&original)?;
        if is_current(&original, path)? {
            break original;
        }
    };
    let temporary = path.with_extension("jsonl.erasing");
    let mut erased = 0u64;
    let mut kept = std::io::BufWriter::new(File::create(&temporary)?);
    for line in BufReader::new(&original).split(b'\n') {
        let line = line?;
        let matched = std::str::from_utf8(&line).is_ok_and(|text| subjects.matches_json(text));
        if matched {
            erased += 1;
        } else {
            kept.write_all(&line)?;
            kept.write_all(b"\n")?;
        }
    }
    let kept = kept.into_inner().map_err(|error| error.into_error())?;
    kept.sync_all()?;
    if erased == 0 {
        drop(kept);
        std::fs::remove_file(&temporary)?;
        return Ok(0);
    }
    std::fs::rename(&temporary, path)?;
    if let Some(folder) = path.parent() {
        File::open(folder)?.sync_all()?;
    }
    // The lock on the replaced file is released with it; waiting writers then reopen the path.
    drop(original);
    Ok(erased)
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
            let written = tokio::task::spawn_blocking({
                let path = path.clone();
                move || {
                    let mut file = file
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    append(&mut file, &path, lines.as_bytes())
                }
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

    fn erase<'a>(&'a self, subjects: &'a SubjectSet) -> ErasureFuture<'a> {
        let path = self.path.clone();
        let subjects = subjects.clone();
        Box::pin(async move {
            let erased = tokio::task::spawn_blocking(move || erase_lines(&path, &subjects)).await;
            match erased {
                Ok(Ok(count)) => Erasure::Erased(count),
                Ok(Err(error)) => {
                    Erasure::Failed(format!("cannot rewrite {}: {error}", self.path.display()))
                }
                Err(error) => Erasure::Failed(format!("the file task stopped: {error}")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::Subject;

    fn event(json: &str) -> OutgoingEvent {
        OutgoingEvent {
            id: "e".into(),
            name: "x".into(),
            partition_key: "k".into(),
            json: json.into(),
        }
    }

    #[tokio::test]
    async fn erasing_rewrites_the_file_and_later_batches_land_in_the_new_one() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("archive.jsonl");
        let connector = JsonlConnector::open(&path).unwrap();
        let batch = [
            event(r#"{"name":"a","data":{},"user_id":"u1"}"#),
            event(r#"{"name":"b","data":{},"anonymous_id":"a1"}"#),
            event(r#"{"name":"c","data":{},"user_id":"u2"}"#),
        ];
        assert_eq!(connector.deliver(&batch).await, Delivery::Delivered);
        let subjects = SubjectSet::new(&[
            Subject::UserId("u1".into()),
            Subject::AnonymousId("a1".into()),
        ]);
        assert_eq!(connector.erase(&subjects).await, Erasure::Erased(2));
        assert_eq!(connector.erase(&subjects).await, Erasure::Erased(0));
        // The connector's handle is of the replaced file: the next batch must reach the new one.
        assert_eq!(
            connector
                .deliver(&[event(r#"{"name":"d","data":{},"user_id":"u3"}"#)])
                .await,
            Delivery::Delivered
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let names: Vec<&str> = text
            .lines()
            .map(|line| {
                if line.contains("\"c\"") {
                    "c"
                } else if line.contains("\"d\"") {
                    "d"
                } else {
                    line
                }
            })
            .collect();
        assert_eq!(names, ["c", "d"]);
    }
}
