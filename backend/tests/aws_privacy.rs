//! AWS mode's side of the privacy controls, against moto started by `scripts/start-moto.sh`:
//!
//! - `tributary privacy delete|suppress|unsuppress|list --s3 s3://BUCKET/suppressions.json`
//!   (the real binary) read, change and write the S3 object; the router reads it beside the
//!   rules, re-reads it when its ETag changes, and drops (and counts) the events of deleted and
//!   suppressed users; a missing object is an empty list, a malformed one keeps the last good
//!   list (and stops a router that never had one);
//! - a write with a stale ETag is refused, and `update` reads again and keeps both changes;
//! - the connector function leaves out the events of users deleted while they waited;
//! - `tributary dlq redrive --queue URL --suppressions s3://…` leaves them out of a redrive;
//! - the ingest behind API Gateway takes `context.ip` from the request context's source IP.

#![cfg(feature = "aws")]
#![allow(clippy::print_stderr)]

mod aws_common;

use std::pin::Pin;
use std::process::Output;
use std::sync::{Arc, Mutex};

use aws_lambda_events::event::kinesis::KinesisEvent;
use base64::Engine;
use serde_json::{Value, json};
use tower::ServiceExt;
use tributary_backend::aws::SqsDeadLetterQueue;
use tributary_backend::aws::connector::ConnectorFunction;
use tributary_backend::aws::destinations::Destinations;
use tributary_backend::aws::ingest::{self, IngestSettings};
use tributary_backend::aws::router::RouterFunction;
use tributary_backend::aws::rules_source::S3Rules;
use tributary_backend::aws::suppression_source::{S3SuppressionList, StoreOutcome};
use tributary_backend::ingest::EventSink;
use tributary_backend::log::{AppendOutcome, IncomingEvent, LogError};
use tributary_backend::privacy::{IpMode, Subject, SuppressionList};

use aws_common::{
    Queue, connector_config, create_queue, data, moto_url, s3_client, sdk_config, tributary, unique,
};

fn succeeded(output: &Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The events of every router payload in the queue (received and deleted).
async fn events_in(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let output = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        if output.messages().is_empty() {
            return events;
        }
        for message in output.messages() {
            let body: Value = serde_json::from_str(message.body().unwrap()).unwrap();
            events.extend(body["events"].as_array().unwrap().iter().cloned());
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &str) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body.as_bytes().to_vec().into())
        .send()
        .await
        .unwrap();
}

fn mixed_event() -> KinesisEvent {
    serde_json::from_str(&data("kinesis-event-mixed.json")).unwrap()
}

/// A batch of raw (not aggregated) records, one per envelope, that arrived now.
fn fresh_event(envelopes: &[Value]) -> KinesisEvent {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    // Seconds with milliseconds, as Kinesis writes them (read by the router's own reader,
    // which keeps every millisecond: `.5` is 500 ms).
    let now: Value = serde_json::from_str(&format!(
        "{}.{:03}",
        since_epoch.as_secs(),
        since_epoch.subsec_millis()
    ))
    .unwrap();
    let records: Vec<Value> = envelopes
        .iter()
        .enumerate()
        .map(|(i, envelope)| {
            let sequence = format!("4959033827149025660855969253836157109592157598913658{i:04}");
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": envelope["anonymous_id"],
                    "sequenceNumber": sequence,
                    "data": base64::engine::general_purpose::STANDARD.encode(envelope.to_string()),
                    "approximateArrivalTimestamp": now,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("shardId-000000000000:{sequence}"),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/router",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/privacy",
            })
        })
        .collect();
    tributary_backend::aws::records::kinesis_event(json!({ "Records": records })).unwrap()
}

fn envelope(id: u32, anonymous_id: &str) -> Value {
    json!({
        "id": format!("0192f0c4-1b2a-7c3d-8e4f-{id:012}"),
        "name": "page_view",
        "data": {"path": "/"},
        "anonymous_id": anonymous_id,
    })
}

#[tokio::test]
async fn the_router_honours_the_suppression_list_the_cli_writes_to_s3() {
    let Some(moto) = moto_url() else { return };
    let config = sdk_config(&moto).await;
    let s3 = s3_client(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let bucket = unique("privacy");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let Queue {
        url: archive_url,
        arn: archive_arn,
    } = create_queue(&sqs, "privacy-archive").await;
    let dlq_url = create_queue(&sqs, "privacy-router-dlq").await.url;
    put(
        &s3,
        &bucket,
        "rules.json",
        &json!([{"destination_name": "archive", "destination_arn": archive_arn,
                 "enabled_events": ["*"]}])
        .to_string(),
    )
    .await;
    let new_router = || {
        RouterFunction::new(
            S3Rules::new(s3.clone(), bucket.clone(), "rules.json".into()),
            Destinations::new(aws_sdk_lambda::Client::new(&config), sqs.clone()),
            SqsDeadLetterQueue::new(sqs.clone(), dlq_url.clone()),
        )
        .with_suppressions(S3SuppressionList::new(
            s3.clone(),
            bucket.clone(),
            "suppressions.json".into(),
        ))
    };
    let router = new_router();
    let location = format!("s3://{bucket}/suppressions.json");
    let folder = tempfile::tempdir().unwrap();

    // No list yet: nobody is suppressed, every event is routed.
    let report = router.route(&mixed_event()).await.unwrap();
    assert_eq!((report.suppressed, report.deleted), (0, 0));
    assert_eq!(events_in(&sqs, &archive_url).await.len(), 11);
    let listed = succeeded(&tributary(
        &moto,
        folder.path(),
        &["privacy", "list", "--s3", &location],
    ));
    assert!(listed.contains("nobody is suppressed"), "{listed}");

    // A deletion: the router drops user-42's events received before it (the fixture's four
    // page views arrived on 2026-11-18), counted, and acknowledges their records.
    let printed = succeeded(&tributary(
        &moto,
        folder.path(),
        &[
            "privacy",
            "delete",
            "--user",
            "user-42",
            "--reason",
            "ticket 81",
            "--s3",
            &location,
        ],
    ));
    assert!(printed.contains(&location), "{printed}");
    let event = mixed_event();
    let report = router.route(&event).await.unwrap();
    assert_eq!((report.suppressed, report.deleted), (0, 4));
    assert!(report.failed_sequence_numbers.is_empty());
    let routed = events_in(&sqs, &archive_url).await;
    assert_eq!(routed.len(), 7);
    assert!(
        routed.iter().all(|e| e["user_id"] != "user-42"),
        "{routed:#?}"
    );
    // The request is in the audit trail of the data dir.
    let trail = succeeded(&tributary(
        &moto,
        folder.path(),
        &["privacy", "requests", "--json"],
    ));
    assert!(
        trail.contains("ticket 81") && trail.contains("user-42"),
        "{trail}"
    );

    // A suppression, written beside the deletion (read-modify-write keeps both): events of
    // anon-fresh received from now on are dropped; others are not.
    succeeded(&tributary(
        &moto,
        folder.path(),
        &[
            "privacy",
            "suppress",
            "--anonymous-id",
            "anon-fresh",
            "--s3",
            &location,
        ],
    ));
    let stored = succeeded(&tributary(
        &moto,
        folder.path(),
        &["privacy", "list", "--json", "--s3", &location],
    ));
    let stored = SuppressionList::from_json(&stored).unwrap();
    assert_eq!(stored.deleted.len(), 1);
    assert_eq!(stored.deleted[0].subject, Subject::UserId("user-42".into()));
    assert_eq!(stored.suppressed.len(), 1);
    assert_eq!(
        stored.suppressed[0].subject,
        Subject::AnonymousId("anon-fresh".into())
    );
    let fresh = fresh_event(&[envelope(1, "anon-fresh"), envelope(2, "anon-other")]);
    let report = router.route(&fresh).await.unwrap();
    assert_eq!((report.suppressed, report.deleted), (1, 0), "{report:?}");
    let routed = events_in(&sqs, &archive_url).await;
    assert_eq!(routed.len(), 1);
    assert_eq!(routed[0]["anonymous_id"], "anon-other");

    // Unsuppressed: collected again at the next batch (the object's ETag changed).
    succeeded(&tributary(
        &moto,
        folder.path(),
        &[
            "privacy",
            "unsuppress",
            "--anonymous-id",
            "anon-fresh",
            "--s3",
            &location,
        ],
    ));
    let report = router.route(&fresh).await.unwrap();
    assert_eq!((report.suppressed, report.deleted), (0, 0));
    assert_eq!(events_in(&sqs, &archive_url).await.len(), 2);

    // A malformed object: this router keeps the last good list (the deletion still holds);
    // a router that never had a list stops (its batch is retried) rather than deliver.
    put(
        &s3,
        &bucket,
        "suppressions.json",
        "{\"version\": 1, \"suppressed\": [",
    )
    .await;
    let report = router.route(&event).await.unwrap();
    assert_eq!(report.deleted, 4);
    assert_eq!(events_in(&sqs, &archive_url).await.len(), 7);
    let error = new_router().route(&event).await.unwrap_err().to_string();
    assert!(error.contains(&location), "{error}");
    assert!(events_in(&sqs, &archive_url).await.is_empty());
    // …and the CLI refuses to overwrite it.
    let refused = tributary(
        &moto,
        folder.path(),
        &["privacy", "suppress", "--user", "u-1", "--s3", &location],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(&location),
        "{refused:?}"
    );

    // A location that is not one is a clear error.
    let bad = tributary(
        &moto,
        folder.path(),
        &[
            "privacy",
            "list",
            "--s3",
            &format!("{bucket}/suppressions.json"),
        ],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("s3://BUCKET/KEY"));
    drain_queue(&sqs, &dlq_url).await;
}

async fn drain_queue(sqs: &aws_sdk_sqs::Client, url: &str) {
    let _ = sqs.purge_queue().queue_url(url).send().await;
}

#[tokio::test]
async fn a_write_with_a_stale_etag_is_refused_and_update_keeps_both_changes() {
    let Some(moto) = moto_url() else { return };
    let config = sdk_config(&moto).await;
    let s3 = s3_client(&config);
    let bucket = unique("privacy-etag");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let list = S3SuppressionList::new(s3.clone(), bucket.clone(), "suppressions.json".into());
    let (etag, empty) = list.load().await.unwrap();
    assert_eq!(etag, None);
    assert_eq!(empty, SuppressionList::default());

    let mut first = SuppressionList::default();
    first.suppress(
        Subject::UserId("a".into()),
        time::OffsetDateTime::now_utc(),
        None,
    );
    let StoreOutcome::Stored(first_etag) = list.store(&first, None).await.unwrap() else {
        panic!("the first write has nothing to conflict with");
    };
    // Another writer expected no object: refused.
    assert_eq!(
        list.store(&SuppressionList::default(), None).await.unwrap(),
        StoreOutcome::Conflict
    );
    // Someone changes the object behind our back: our write with the old ETag is refused.
    let mut theirs = first.clone();
    theirs.suppress(
        Subject::UserId("b".into()),
        time::OffsetDateTime::now_utc(),
        None,
    );
    assert!(matches!(
        list.store(&theirs, Some(&first_etag)).await.unwrap(),
        StoreOutcome::Stored(_)
    ));
    assert_eq!(
        list.store(&first, Some(&first_etag)).await.unwrap(),
        StoreOutcome::Conflict
    );
    // update reads the current object, so b's suppression survives c's.
    let written = list
        .update(|list| {
            list.suppress(
                Subject::AnonymousId("c".into()),
                time::OffsetDateTime::now_utc(),
                None,
            );
        })
        .await
        .unwrap();
    let subjects: Vec<&Subject> = written.suppressed.iter().map(|s| &s.subject).collect();
    assert_eq!(
        subjects,
        [
            &Subject::UserId("a".into()),
            &Subject::UserId("b".into()),
            &Subject::AnonymousId("c".into())
        ]
    );
    assert_eq!(list.load().await.unwrap().1, written);
}

#[tokio::test]
async fn the_connector_leaves_out_events_of_users_deleted_while_they_waited() {
    let Some(moto) = moto_url() else { return };
    let config = sdk_config(&moto).await;
    let s3 = s3_client(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let bucket = unique("privacy-connector");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let dlq_url = create_queue(&sqs, "privacy-connector-dlq").await.url;
    let folder = tempfile::tempdir().unwrap();
    let archive = folder.path().join("archive.jsonl");
    let connector_config = connector_config(
        &format!(
            "[destinations.archive]\nkind = \"jsonl\"\npath = {:?}\n",
            archive.display().to_string()
        ),
        folder.path(),
    );
    let connector = ConnectorFunction::new(
        &connector_config,
        "archive",
        Arc::new(SqsDeadLetterQueue::new(sqs.clone(), dlq_url.clone())),
    )
    .unwrap()
    .with_suppressions(S3SuppressionList::new(
        s3.clone(),
        bucket.clone(),
        "suppressions.json".into(),
    ));
    let received_at = "2026-11-27T10:00:00.000Z";
    let payload = |ids: &[u32]| {
        json!({
            "destination": "archive",
            "events": ids.iter().map(|&id| {
                let mut event = envelope(id, if id % 2 == 0 { "anon-gone" } else { "anon-kept" });
                event["received_at"] = json!(received_at);
                event
            }).collect::<Vec<_>>(),
        })
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let answer = connector.handle(payload(&[1, 2]), deadline).await.unwrap();
    assert_eq!(answer["delivered"], 2, "no list: every event");

    let list = S3SuppressionList::new(s3.clone(), bucket.clone(), "suppressions.json".into());
    list.update(|list| {
        list.deleted
            .push(tributary_backend::privacy::suppression::Deletion {
                subject: Subject::AnonymousId("anon-gone".into()),
                received_before: time::macros::datetime!(2026-11-27 11:00 UTC),
                request: None,
            });
    })
    .await
    .unwrap();
    let answer = connector
        .handle(payload(&[3, 4, 5, 6]), deadline)
        .await
        .unwrap();
    assert_eq!(answer["delivered"], 2, "{answer}");
    assert_eq!(answer["dead_lettered"], 0, "{answer}");
    let lines = std::fs::read_to_string(&archive).unwrap();
    assert_eq!(lines.lines().count(), 4);
    assert_eq!(
        lines.matches("anon-gone").count(),
        1,
        "only the one sent before"
    );
    let _ = sqs.purge_queue().queue_url(&dlq_url).send().await;
}

/// Keeps what the ingest accepts.
#[derive(Default)]
struct Captured(Mutex<Vec<Value>>);

impl EventSink for Captured {
    fn append(
        &self,
        events: Vec<IncomingEvent>,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<AppendOutcome, LogError>> + Send + '_>>
    {
        let appended = events.len();
        self.0.lock().unwrap().extend(
            events
                .iter()
                .map(|event| serde_json::from_str::<Value>(&event.json).unwrap()),
        );
        Box::pin(async move {
            Ok(AppendOutcome {
                appended,
                duplicates: 0,
            })
        })
    }
}

async fn ip_through_api_gateway(request: &Value, ip_mode: IpMode) -> Option<String> {
    let sink = Arc::new(Captured::default());
    let router = ingest::router(
        sink.clone(),
        &IngestSettings {
            write_keys: vec!["test-write-key".into()],
            allowed_origins: vec!["*".into()],
            rate_limit_per_key: 0,
            ip_mode,
        },
    );
    let request: lambda_http::request::LambdaRequest =
        serde_json::from_value(request.clone()).unwrap();
    let response = lambda_http::Adapter::from(ingest::lambda_service(router))
        .oneshot(lambda_runtime::LambdaEvent::new(
            request,
            lambda_runtime::Context::default(),
        ))
        .await
        .unwrap();
    let response = serde_json::to_value(response).unwrap();
    assert_eq!(response["statusCode"], 200, "{response:#}");
    let events = sink.0.lock().unwrap().clone();
    assert!(!events.is_empty());
    events[0]["context"]["ip"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn the_ingest_takes_context_ip_from_the_api_gateway_source_ip() {
    let cases: Value = serde_json::from_str(&data("apigw-rest-requests.json")).unwrap();
    let rest = cases["cases"][0]["request"].clone();
    assert_eq!(
        rest["requestContext"]["identity"]["sourceIp"],
        "203.0.113.7"
    );
    assert_eq!(
        ip_through_api_gateway(&rest, IpMode::Anonymize)
            .await
            .as_deref(),
        Some("203.0.113.0")
    );
    assert_eq!(
        ip_through_api_gateway(&rest, IpMode::Full).await.as_deref(),
        Some("203.0.113.7")
    );
    assert_eq!(ip_through_api_gateway(&rest, IpMode::Drop).await, None);
    // X-Forwarded-For is the client's to write: API Gateway's sourceIp wins.
    let mut forwarded = rest.clone();
    forwarded["headers"]["X-Forwarded-For"] = json!("198.51.100.1");
    forwarded["multiValueHeaders"]["X-Forwarded-For"] = json!(["198.51.100.1"]);
    assert_eq!(
        ip_through_api_gateway(&forwarded, IpMode::Full)
            .await
            .as_deref(),
        Some("203.0.113.7")
    );
    // The console's test invocations carry no address: no context.ip rather than a wrong one.
    let mut console = rest.clone();
    console["requestContext"]["identity"]["sourceIp"] = json!("test-invoke-source-ip");
    assert_eq!(ip_through_api_gateway(&console, IpMode::Full).await, None);

    // An HTTP API (payload 2.0) or function URL request: requestContext.http.sourceIp.
    let http_api = json!({
        "version": "2.0",
        "routeKey": "POST /v1/batch",
        "rawPath": "/v1/batch",
        "rawQueryString": "",
        "headers": {"authorization": "Bearer test-write-key", "content-type": "application/json"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "api", "domainName": "api.example.com",
            "domainPrefix": "api", "requestId": "r1", "routeKey": "POST /v1/batch",
            "stage": "$default", "time": "27/Nov/2026:10:00:00 +0000", "timeEpoch": 1795000000000u64,
            "http": {"method": "POST", "path": "/v1/batch", "protocol": "HTTP/1.1",
                     "sourceIp": "2001:db8:abcd:12::1", "userAgent": "test"}
        },
        "body": json!({"batch": [envelope(9, "anon-v6")]}).to_string(),
        "isBase64Encoded": false
    });
    assert_eq!(
        ip_through_api_gateway(&http_api, IpMode::Anonymize)
            .await
            .as_deref(),
        Some("2001:db8:abcd::")
    );
}

#[tokio::test]
async fn dlq_queue_redrive_leaves_out_the_events_of_users_on_the_s3_list() {
    let Some(moto) = moto_url() else { return };
    let config = sdk_config(&moto).await;
    let s3 = s3_client(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let bucket = unique("privacy-redrive");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let dlq_url = create_queue(&sqs, "privacy-redrive-dlq").await.url;
    let event = |id: &str, user: &str| {
        json!({"id": id, "name": "login", "data": {}, "user_id": user,
               "received_at": "2026-11-27T10:00:00.000Z"})
    };
    let message = |events: Vec<Value>| {
        json!({
            "v": 1, "destination": "archive", "events": events,
            "error": {"class": "retryable", "status": 503, "message": "HTTP 503"},
            "attempts": 3,
            "first_failed_at": "2026-11-27T10:00:00.000Z",
            "last_failed_at": "2026-11-27T10:01:00.000Z"
        })
        .to_string()
    };
    for body in [
        message(vec![event("e-1", "gone"), event("e-2", "kept")]),
        message(vec![event("e-3", "gone")]),
    ] {
        sqs.send_message()
            .queue_url(&dlq_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(
        folder.path().join("tributary.toml"),
        "[destinations.archive]\nkind = \"jsonl\"\npath = \"archive.jsonl\"\n",
    )
    .unwrap();
    let location = format!("s3://{bucket}/suppressions.json");
    succeeded(&tributary(
        &moto,
        folder.path(),
        &["privacy", "delete", "--user", "gone", "--s3", &location],
    ));

    let printed = succeeded(&tributary(
        &moto,
        folder.path(),
        &[
            "dlq",
            "redrive",
            "--queue",
            &dlq_url,
            "--suppressions",
            &location,
        ],
    ));
    assert!(
        printed.contains("2 events of deleted or suppressed users left out"),
        "{printed}"
    );
    let archived = std::fs::read_to_string(folder.path().join("archive.jsonl")).unwrap();
    let ids: Vec<String> = archived
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, ["e-2"]);
    // Both messages are gone: one redriven, one left with no event to redrive.
    let left = sqs
        .receive_message()
        .queue_url(&dlq_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    assert!(left.messages().is_empty(), "{left:?}");

    // --suppressions only makes sense with --queue.
    let refused = tributary(
        &moto,
        folder.path(),
        &["dlq", "redrive", "--suppressions", &location],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--queue"));
}
