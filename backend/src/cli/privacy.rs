//! `tributary privacy delete | suppress | unsuppress | list | requests`.

use std::sync::Arc;
use std::time::Duration;

use super::{PrivacyArgs, PrivacyCommand, SubjectArgs};
use crate::config::Config;
use crate::local::SUPPRESSION_INTERVAL;
use crate::privacy::{PrivacyRequests, RequestRecord, StoreOutcome, Subject, SuppressionStore};

pub(super) async fn run(args: PrivacyArgs) -> Result<(), String> {
    let config = Config::load(args.config.as_deref()).map_err(|error| error.to_string())?;
    let data_dir = &config.storage.data_dir;
    let remote = remote_list(args.s3.as_deref()).await?;
    let place = |requests: PrivacyRequests| match &remote {
        Some(store) => requests.with_remote_list(store.clone()),
        None => requests,
    };
    let dropped_by = match &remote {
        Some(store) => format!("dropped by the router ({})", store.location()),
        None => "dropped at the ingest".to_owned(),
    };
    match args.command {
        PrivacyCommand::Delete {
            subjects,
            suppress,
            reason,
            json,
        } => {
            // A `serve` on the same data dir notices the list within SUPPRESSION_INTERVAL; wait
            // that long twice before cleaning the stores, so it has stopped sending first.
            let requests = place(PrivacyRequests::new(
                data_dir,
                PrivacyRequests::targets_of(&config),
                None,
                SUPPRESSION_INTERVAL * 2 + Duration::from_millis(200),
            ));
            let record = requests
                .delete(subjects_of(subjects), suppress, reason, "cli")
                .await
                .map_err(|error| error.to_string())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&record).unwrap_or_default()
                );
            } else {
                print_deletion(&record, remote.as_deref());
            }
            match &record.erasure {
                Some(erasure) if !erasure.complete() => Err(
                    "some stores could not delete; run the same command again once they are reachable"
                        .into(),
                ),
                _ => Ok(()),
            }
        }
        PrivacyCommand::Suppress { subjects, reason } => {
            let requests = place(local_requests(data_dir));
            let record = requests
                .suppress(subjects_of(subjects), reason, "cli")
                .await
                .map_err(|error| error.to_string())?;
            for subject in &record.subjects {
                println!("suppressed {subject}: its new events are {dropped_by}");
            }
            Ok(())
        }
        PrivacyCommand::Unsuppress { subjects, reason } => {
            let requests = place(local_requests(data_dir));
            let record = requests
                .unsuppress(subjects_of(subjects), reason, "cli")
                .await
                .map_err(|error| error.to_string())?;
            for subject in &record.subjects {
                println!("unsuppressed {subject}: its events are collected again");
            }
            Ok(())
        }
        PrivacyCommand::List { json } => {
            let list = place(local_requests(data_dir))
                .list()
                .await
                .map_err(|error| error.to_string())?;
            if json {
                println!("{}", list.to_json());
                return Ok(());
            }
            if list.suppressed.is_empty() {
                println!("nobody is suppressed");
            }
            for entry in &list.suppressed {
                println!(
                    "{:<40} since {}{}",
                    entry.subject.to_string(),
                    entry
                        .since
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                    entry
                        .reason
                        .as_deref()
                        .map(|reason| format!("  ({reason})"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        PrivacyCommand::Requests { json } => {
            let records = local_requests(data_dir)
                .history()
                .map_err(|error| error.to_string())?;
            if records.is_empty() && !json {
                println!("no privacy requests yet");
            }
            for record in &records {
                if json {
                    println!("{}", serde_json::to_string(record).unwrap_or_default());
                    continue;
                }
                let subjects: Vec<String> =
                    record.subjects.iter().map(ToString::to_string).collect();
                let erased = record.erasure.as_ref().map_or(String::new(), |erasure| {
                    let destinations: u64 = erasure
                        .destinations
                        .values()
                        .map(|outcome| match outcome {
                            StoreOutcome::Erased { events } => *events,
                            _ => 0,
                        })
                        .sum();
                    format!(
                        "  log {} / dlq {} / destinations {} events removed{}",
                        erasure.log,
                        erasure.dlq_events,
                        destinations,
                        if erasure.complete() {
                            ""
                        } else {
                            " (incomplete)"
                        }
                    )
                });
                println!(
                    "{}  {:<10} {:<4} {}{}",
                    record.requested_at,
                    format!("{:?}", record.action).to_lowercase(),
                    record.via,
                    subjects.join(", "),
                    erased
                );
            }
            Ok(())
        }
    }
}

/// Requests that only touch the list and the trail (no destinations).
fn local_requests(data_dir: &std::path::Path) -> PrivacyRequests {
    PrivacyRequests::new(data_dir, Default::default(), None, Duration::ZERO)
}

fn subjects_of(args: SubjectArgs) -> Vec<Subject> {
    args.user_ids
        .into_iter()
        .map(Subject::UserId)
        .chain(args.anonymous_ids.into_iter().map(Subject::AnonymousId))
        .collect()
}

fn print_deletion(record: &RequestRecord, remote: Option<&dyn SuppressionStore>) {
    let subjects: Vec<String> = record.subjects.iter().map(ToString::to_string).collect();
    println!("deletion {} of {}", record.id, subjects.join(", "));
    let Some(erasure) = &record.erasure else {
        return;
    };
    match remote {
        Some(store) => {
            println!(
                "  stream        listed as deleted in {}: the router drops their events",
                store.location()
            );
            println!("  sqs dlq       left out by `tributary dlq --queue URL redrive`");
        }
        None => {
            println!("  log           {} events removed", erasure.log);
            println!(
                "  dlq           {} events removed ({} messages emptied and deleted)",
                erasure.dlq_events, erasure.dlq_messages
            );
        }
    }
    for error in &erasure.errors {
        println!("  FAILED        {error}");
    }
    for (name, outcome) in &erasure.destinations {
        match outcome {
            StoreOutcome::Erased { events } => println!("  {name:<13} {events} events removed"),
            StoreOutcome::Unsupported { reason } => {
                println!("  {name:<13} not deleted here: {reason}")
            }
            StoreOutcome::Failed { error } => println!("  {name:<13} FAILED: {error}"),
        }
    }
    println!("  recorded in privacy-requests.jsonl");
}

/// The S3 object `--s3` names, as the list's store.
#[cfg(feature = "aws")]
async fn remote_list(location: Option<&str>) -> Result<Option<Arc<dyn SuppressionStore>>, String> {
    let Some(location) = location else {
        return Ok(None);
    };
    let sdk_config = crate::aws::settings::sdk_config().await;
    let list = crate::aws::suppression_source::S3SuppressionList::at(
        crate::aws::router::s3_client(&sdk_config),
        location,
    )
    .map_err(|error| error.to_string())?;
    Ok(Some(Arc::new(list)))
}

#[cfg(not(feature = "aws"))]
async fn remote_list(location: Option<&str>) -> Result<Option<Arc<dyn SuppressionStore>>, String> {
    match location {
        None => Ok(None),
        Some(_) => Err(
            "--s3 needs AWS support: this tributary was built without the `aws` feature \
             (cargo install with --features aws)"
                .into(),
        ),
    }
}
