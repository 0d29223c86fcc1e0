//! `tributary dlq list | backup | redrive | purge`.

use super::{DlqArgs, DlqCommand};
use crate::config::Config;
use crate::dlq::backup::{self, BackupLine};
use crate::dlq::redrive::{self, RedriveSource};
use crate::dlq::{DeadLetterQueue, StoredMessage};
use crate::local::build_targets;
use crate::privacy::SuppressionFile;

pub(super) async fn run(args: DlqArgs) -> Result<(), String> {
    if let Some(queue) = args.queue.clone() {
        return run_on_queue(args, queue).await;
    }
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
            print_redrive_report(&report, dry_run, "kept in the DLQ")
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

#[cfg(not(feature = "aws"))]
async fn run_on_queue(_args: DlqArgs, _queue: String) -> Result<(), String> {
    Err(
        "--queue needs AWS support: this tributary was built without the `aws` feature \
         (cargo install with --features aws)"
            .into(),
    )
}

/// The DLQ commands on an SQS queue (`--queue URL`).
#[cfg(feature = "aws")]
async fn run_on_queue(args: DlqArgs, queue: String) -> Result<(), String> {
    use std::io::IsTerminal;

    use crate::aws::queue_tool::QueueTool;

    let sdk_config = crate::aws::settings::sdk_config().await;
    let tool = QueueTool::new(
        aws_sdk_sqs::Client::new(&sdk_config),
        queue.clone(),
        std::io::stderr().is_terminal(),
    );
    let failed = |error: crate::aws::AwsError| error.to_string();
    match args.command {
        DlqCommand::List { destination } => {
            let messages = tool.list(destination.as_deref()).await.map_err(failed)?;
            if messages.is_empty() {
                println!("{queue}: no messages");
            }
            for message in &messages {
                match redrive::parse_body(&message.body, None) {
                    Ok(parsed) => println!(
                        "{}  {:<16} {:>6} events  attempts {}  {}  {}",
                        message.id,
                        parsed.destination,
                        parsed.events.len(),
                        parsed.attempts,
                        parsed.error.class,
                        parsed.error.message
                    ),
                    Err(_) => println!(
                        "{}  not redrivable ({} bytes): {}",
                        message.id,
                        message.body.len(),
                        message.body.chars().take(120).collect::<String>()
                    ),
                }
            }
            println!("{} messages", messages.len());
            Ok(())
        }
        DlqCommand::Backup {
            out,
            purge,
            destination,
        } => {
            let report = tool
                .backup(&out, purge, destination.as_deref())
                .await
                .map_err(failed)?;
            println!(
                "backed up {} messages from {queue} to {}{}",
                report.written,
                out.display(),
                if purge {
                    format!(" and deleted {} from the queue", report.deleted)
                } else {
                    " (they are in the queue again)".into()
                }
            );
            Ok(())
        }
        DlqCommand::Redrive {
            destination,
            from,
            dry_run,
        } => {
            let config = Config::load(args.config.as_deref()).map_err(|error| error.to_string())?;
            let targets = build_targets(&config)?;
            let file_lines = match &from {
                Some(path) => Some(
                    backup::read(path).map_err(|error| format!("{}: {error}", path.display()))?,
                ),
                None => None,
            };
            let privacy = match &args.suppressions {
                Some(location) => {
                    let list = crate::aws::suppression_source::S3SuppressionList::at(
                        crate::aws::router::s3_client(&sdk_config),
                        location,
                    )
                    .map_err(failed)?;
                    list.load().await.map_err(failed)?.1.index()
                }
                None => SuppressionFile::in_data_dir(&config.storage.data_dir)
                    .load()
                    .map_err(|error| error.to_string())?
                    .index(),
            };
            let report = tool
                .redrive(
                    &targets,
                    file_lines.as_deref(),
                    destination.as_deref(),
                    dry_run,
                    &privacy,
                )
                .await
                .map_err(failed)?;
            print_redrive_report(&report, dry_run, &format!("back in {queue}"))
        }
        DlqCommand::Purge { destination } => {
            match tool.purge(destination.as_deref()).await.map_err(failed)? {
                Some(count) => println!("deleted {count} messages from {queue}"),
                None => println!("purged {queue}"),
            }
            Ok(())
        }
    }
}

/// The summary's note on events left out for privacy (empty when none were).
/// Prints a redrive's lines and summary (`kept`: where the messages that failed again are);
/// an error when some were not redriven.
fn print_redrive_report(
    report: &redrive::RedriveReport,
    dry_run: bool,
    kept: &str,
) -> Result<(), String> {
    for line in &report.lines {
        println!("{line}");
    }
    println!(
        "{}{} messages: {} events delivered, {} failed again ({} messages {kept}), {} skipped{}",
        if dry_run { "dry run: " } else { "" },
        report.messages,
        report.delivered,
        report.failed,
        report.kept,
        report.skipped,
        privacy_note(report.privacy_dropped)
    );
    if report.failed > 0 || report.skipped > 0 {
        return Err("some messages were not redriven".into());
    }
    Ok(())
}

fn privacy_note(dropped: usize) -> String {
    if dropped > 0 {
        format!(", {dropped} events of deleted or suppressed users left out")
    } else {
        String::new()
    }
}
