//! `tributary dlq list | backup | redrive | purge`.

use super::{DlqArgs, DlqCommand};
use crate::config::Config;
use crate::dlq::backup::{self, BackupLine};
use crate::dlq::redrive::{self, RedriveSource};
use crate::dlq::{DeadLetterQueue, StoredMessage};
use crate::local::build_targets;
use crate::privacy::SuppressionFile;

pub(super) async fn run(args: DlqArgs) -> Result<(), String> {
    let config = Config::load(args.config.as_deref()).map_err(|error| error.to_string())?;
    let dlq = DeadLetterQueue::open(&config.storage.data_dir).map_err(|error| error.to_string())?;
    match args.command {
        DlqCommand::List { destination } => list(&dlq, destination.as_deref()),
        DlqCommand::Backup {
            out,
            purge,
            destination,
        } => {
            let entries = dlq
                .list(destination.as_deref())
                .map_err(|error| error.to_string())?;
            let messages: Vec<StoredMessage> = entries.into_iter().filter_map(Result::ok).collect();
            let lines: Vec<BackupLine> = messages
                .iter()
                .map(|stored| BackupLine {
                    body: stored.body.clone(),
                    attributes: stored.message.attributes(),
                })
                .collect();
            backup::append(&out, &lines).map_err(|error| format!("{}: {error}", out.display()))?;
            if purge {
                for stored in &messages {
                    dlq.delete(stored.id).map_err(|error| error.to_string())?;
                }
            }
            println!(
                "backed up {} messages to {}{}",
                lines.len(),
                out.display(),
                if purge {
                    " and removed them from the DLQ"
                } else {
                    ""
                }
            );
            Ok(())
        }
        DlqCommand::Redrive {
            destination,
            from,
            dry_run,
        } => {
            let targets = build_targets(&config)?;
            let file_lines = match &from {
                Some(path) => Some(
                    backup::read(path).map_err(|error| format!("{}: {error}", path.display()))?,
                ),
                None => None,
            };
            let source = match &file_lines {
                Some(lines) => RedriveSource::File(lines),
                None => RedriveSource::Queue,
            };
            let privacy = SuppressionFile::in_data_dir(&config.storage.data_dir)
                .load()
                .map_err(|error| error.to_string())?
                .index();
            let report = redrive::redrive(
                &dlq,
                &targets,
                source,
                destination.as_deref(),
                dry_run,
                &privacy,
            )
            .await
            .map_err(|error| error.to_string())?;
            for line in &report.lines {
                println!("{line}");
            }
            println!(
                "{}{} messages: {} events delivered, {} failed again ({} messages kept in the DLQ), {} skipped{}",
                if dry_run { "dry run: " } else { "" },
                report.messages,
                report.delivered,
                report.failed,
                report.kept,
                report.skipped,
                if report.privacy_dropped > 0 {
                    format!(
                        ", {} events of deleted or suppressed users left out",
                        report.privacy_dropped
                    )
                } else {
                    String::new()
                }
            );
            if report.failed > 0 || report.skipped > 0 {
                return Err("some messages were not redriven".into());
            }
            Ok(())
        }
        DlqCommand::Purge { destination } => {
            let removed = dlq
                .purge(destination.as_deref())
                .map_err(|error| error.to_string())?;
            println!("removed {removed} messages");
            Ok(())
        }
    }
}

fn list(dlq: &DeadLetterQueue, destination: Option<&str>) -> Result<(), String> {
    let entries = dlq.list(destination).map_err(|error| error.to_string())?;
    if entries.is_empty() {
        println!("the dead-letter queue is empty");
        return Ok(());
    }
    println!(
        "{:>6}  {:<16} {:>6} {:>8}  {:<10} {:>6}  {:<24}  error",
        "id", "destination", "events", "attempts", "class", "status", "last failed"
    );
    for entry in entries {
        match entry {
            Ok(stored) => {
                let message = &stored.message;
                println!(
                    "{:>6}  {:<16} {:>6} {:>8}  {:<10} {:>6}  {:<24}  {}",
                    stored.id,
                    message.destination,
                    message.events.len(),
                    message.attempts,
                    message.error.class,
                    message
                        .error
                        .status
                        .map_or_else(|| "-".to_owned(), |status| status.to_string()),
                    message.last_failed_at,
                    message.error.message
                );
            }
            Err(unreadable) => println!("{:>6}  unreadable: {}", unreadable.id, unreadable.error),
        }
    }
    Ok(())
}
