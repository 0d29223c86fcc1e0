//! `tributary dlq … --queue URL` against an SQS queue in moto, with the real binary: list,
//! backup (keeping and purging), redrive from the queue and from a backup file, purge by
//! destination — and no message lost on the way.

#![cfg(feature = "aws")]
#![allow(clippy::print_stderr)]

mod aws_common;

use std::process::Output;

use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use serde_json::{Value, json};

use aws_common::{moto_url, sdk_config, tributary, unique};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let attributes = attributes.attributes().unwrap();
    let visible: usize = attributes[&QueueAttributeName::ApproximateNumberOfMessages]
        .parse()
        .unwrap();
    let invisible: usize = attributes[&QueueAttributeName::ApproximateNumberOfMessagesNotVisible]
        .parse()
        .unwrap();
    assert_eq!(
        invisible, 0,
        "every message is visible again after a command"
    );
    visible
}

/// Every body in the queue (received, then made visible again).
async fn bodies(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut receipts = Vec::new();
    loop {
        let output = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .send()
            .await
            .unwrap();
        if output.messages().is_empty() {
            break;
        }
        for message in output.messages() {
            bodies.push(message.body().unwrap().to_owned());
            receipts.push(message.receipt_handle().unwrap().to_owned());
        }
    }
    for receipt in receipts {
        sqs.change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
    }
    bodies.sort();
    bodies
}

fn dead_letter(destination: &str, ids: &[&str], attempts: u32) -> String {
    json!({
        "v": 1, "destination": destination,
        "events": ids.iter().map(|id| json!({"id": id, "name": "login", "data": {}})).collect::<Vec<_>>(),
        "error": {"class": "retryable", "status": 503, "message": "HTTP 503"},
        "attempts": attempts,
        "first_failed_at": "2026-11-27T10:00:00.000Z", "last_failed_at": "2026-11-27T10:01:00.000Z"
    })
    .to_string()
}

#[tokio::test]
async fn dlq_commands_on_an_sqs_queue_lose_nothing() {
    let Some(moto) = moto_url() else { return };
    let config = sdk_config(&moto).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let name = unique("dlq-cli");
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let text = |value: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .unwrap()
    };
    sqs.send_message()
        .queue_url(&url)
        .message_body(dead_letter("archive", &["a-1", "a-2"], 3))
        .message_attributes("destination", text("archive"))
        .send()
        .await
        .unwrap();
    // Lambda's own DLQ keeps the raw invoke payload.
    sqs.send_message()
        .queue_url(&url)
        .message_body(
            json!({"destination": "archive", "events": [{"id": "a-3", "name": "page_view", "data": {}}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    sqs.send_message()
        .queue_url(&url)
        .message_body(dead_letter("hooks", &["h-1"], 2))
        .message_attributes("destination", text("hooks"))
        .send()
        .await
        .unwrap();
    sqs.send_message()
        .queue_url(&url)
        .message_body("not a DLQ message")
        .send()
        .await
        .unwrap();
    let original = bodies(&sqs, &url).await;
    assert_eq!(original.len(), 4);

    let folder = tempfile::tempdir().unwrap();
    std::fs::write(
        folder.path().join("tributary.toml"),
        "[destinations.archive]\nkind = \"jsonl\"\npath = \"archive.jsonl\"\n\n\
         [destinations.hooks]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/events\"\n\
         timeout_ms = 500\nretry = { max_attempts = 1 }\n",
    )
    .unwrap();
    let dir = folder.path();

    let listed = tributary(&moto, dir, &["dlq", "list", "--queue", &url]);
    assert!(listed.status.success());
    assert!(stdout(&listed).contains("4 messages"));
    assert_eq!(depth(&sqs, &url).await, 4);

    // A backup that keeps the messages: four lines, and the queue as it was.
    let backed_up = tributary(
        &moto,
        dir,
        &["dlq", "backup", "--out", "backup.jsonl", "--queue", &url],
    );
    assert!(backed_up.status.success());
    let lines: Vec<Value> = std::fs::read_to_string(dir.join("backup.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let mut backed_bodies: Vec<String> = lines
        .iter()
        .map(|line| line["body"].as_str().unwrap().to_owned())
        .collect();
    backed_bodies.sort();
    assert_eq!(backed_bodies, original);
    let archive_line = lines
        .iter()
        .find(|line| line["body"].as_str().unwrap().contains("a-1"))
        .unwrap();
    assert_eq!(
        archive_line["attributes"]["destination"],
        json!({"DataType": "String", "StringValue": "archive"})
    );
    assert_eq!(bodies(&sqs, &url).await, original);

    // A dry run changes nothing.
    let dry = tributary(
        &moto,
        dir,
        &["dlq", "redrive", "--dry-run", "--queue", &url],
    );
    assert!(stdout(&dry).contains("would redrive 2 events to archive"));
    assert_eq!(bodies(&sqs, &url).await, original);

    // Redrive: archive's three events delivered and their messages deleted; hooks fails again
    // and comes back with attempts raised; the unreadable message stays as it is.
    let redriven = tributary(&moto, dir, &["dlq", "redrive", "--queue", &url]);
    assert!(!redriven.status.success(), "something failed again");
    let archived: Vec<Value> = std::fs::read_to_string(dir.join("archive.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let mut ids: Vec<&str> = archived.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["a-1", "a-2", "a-3"]);
    let left = bodies(&sqs, &url).await;
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&"not a DLQ message".to_owned()));
    let hooks: Value =
        serde_json::from_str(left.iter().find(|b| b.contains("h-1")).unwrap()).unwrap();
    assert_eq!(hooks["attempts"], 3);
    assert_eq!(hooks["destination"], "hooks");
    assert_eq!(hooks["first_failed_at"], "2026-11-27T10:00:00.000Z");

    // Purge one destination's messages only.
    let purged = tributary(
        &moto,
        dir,
        &["dlq", "purge", "--destination", "hooks", "--queue", &url],
    );
    assert!(stdout(&purged).contains("deleted 1 messages"));
    assert_eq!(
        bodies(&sqs, &url).await,
        vec!["not a DLQ message".to_owned()]
    );

    // A purging backup: the line is written, then the message deleted.
    let purging = tributary(
        &moto,
        dir,
        &[
            "dlq",
            "backup",
            "--out",
            "last.jsonl",
            "--purge",
            "--queue",
            &url,
        ],
    );
    assert!(purging.status.success());
    assert_eq!(
        std::fs::read_to_string(dir.join("last.jsonl"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    assert_eq!(depth(&sqs, &url).await, 0);

    // Redrive from the first backup: archive's events again (duplicates, by id), hooks back in
    // the queue, the unreadable line skipped.
    let from_file = tributary(
        &moto,
        dir,
        &["dlq", "redrive", "--from", "backup.jsonl", "--queue", &url],
    );
    assert!(!from_file.status.success());
    assert!(stdout(&from_file).contains("3 events delivered, 1 failed again (1 messages back in"));
    let left = bodies(&sqs, &url).await;
    assert_eq!(left.len(), 1);
    assert!(left[0].contains("h-1"));

    // Purge everything.
    let purged = tributary(&moto, dir, &["dlq", "purge", "--queue", &url]);
    assert!(purged.status.success());
    assert_eq!(depth(&sqs, &url).await, 0);
}
