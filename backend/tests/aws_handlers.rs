//! AWS mode's handlers called directly with fixture events (`tests/data/`), against moto
//! (S3, SQS, Kinesis) started by `scripts/start-moto.sh`, and a local stand-in of the Lambda
//! API where a destination must fail in a chosen way.
//!
//! - the router with `kinesis-event-mixed.json`: eleven events delivered, the poison record in
//!   the bad-records DLQ, empty `batchItemFailures`; the rules changed in S3 mid-test;
//! - a transient destination failure: only the sequence number of the record that carried its
//!   events is reported; a permanent one: dead-lettered, not reported;
//! - the ingest through `lambda_http` with API Gateway proxy requests for every status;
//! - the connector with the router's payload and with SQS events, into its DLQ.

#![cfg(feature = "aws")]
#![allow(clippy::print_stderr)]

mod aws_common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::event::kinesis::KinesisEvent;
use base64::Engine;
use serde_json::{Value, json};
use tributary_backend::aws::destinations::Destinations;
use tributary_backend::aws::ingest::{self, IngestSettings};
use tributary_backend::aws::kinesis_sink::{KinesisSink, StreamWrites};
use tributary_backend::aws::router::RouterFunction;
use tributary_backend::aws::rules_source::S3Rules;
use tributary_backend::aws::{SqsDeadLetterQueue, connector::ConnectorFunction};
use tributary_server::kinesis;

use aws_common::{
    Queue, batch_request, call_ingest, connector_config, create_queue, create_stream, data,
    delete_stream, envelopes_in, moto_url, read_stream, s3_client, sdk_config, unique,
};

/// Every message in the queue (received and deleted).
async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let mut messages = Vec::new();
    loop {
        let output = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        let batch = output.messages().to_vec();
        if batch.is_empty() {
            return messages;
        }
        for message in &batch {
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        messages.extend(batch);
    }
}

/// The events of every router payload in the queue.
async fn events_in(sqs: &aws_sdk_sqs::Client, url: &str, destination: &str) -> Vec<Value> {
    let mut events = Vec::new();
    for message in drain(sqs, url).await {
        let body: Value = serde_json::from_str(message.body().unwrap()).unwrap();
        assert_eq!(body["destination"], destination);
        events.extend(body["events"].as_array().unwrap().iter().cloned());
    }
    events
}

async fn put_rules(s3: &aws_sdk_s3::Client, bucket: &str, rules: &Value) {
    s3.put_object()
        .bucket(bucket)
        .key("rules.json")
        .body(rules.to_string().into_bytes().into())
        .send()
        .await
        .unwrap();
}

/// How many of the fixture's eleven events have one of these names.
fn names_in_fixture(names: &[&str]) -> usize {
    let reference: Value = serde_json::from_str(&data("kpl-aggregated-10.json")).unwrap();
    reference["user_records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| serde_json::from_str::<Value>(record["data_utf8"].as_str().unwrap()).unwrap())
        .filter(|event| names.contains(&event["name"].as_str().unwrap()))
        .count()
}

fn mixed_event() -> KinesisEvent {
    serde_json::from_str(&data("kinesis-event-mixed.json")).unwrap()
}

fn sequence_numbers(event: &KinesisEvent) -> Vec<String> {
    event
        .records
        .iter()
        .map(|record| record.kinesis.sequence_number.clone())
        .collect()
}

/// One request the stand-in received: the function, the invocation type, the payload.
type Invocation = (String, String, Value);

/// A stand-in of the Lambda API's `Invoke`: functions named `throttled-*` answer 429
/// `TooManyRequestsException`, `missing-*` 404 `ResourceNotFoundException`, others 202; every
/// request is recorded.
async fn lambda_stand_in() -> (
    String,
    Arc<AtomicUsize>,
    Arc<std::sync::Mutex<Vec<Invocation>>>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
    let counter = calls.clone();
    let recorded = requests.clone();
    let app = axum::Router::new().route(
        "/2015-03-31/functions/{name}/invocations",
        axum::routing::post(
            move |axum::extract::Path(name): axum::extract::Path<String>,
                  headers: axum::http::HeaderMap,
                  body: axum::body::Bytes| {
                let counter = counter.clone();
                let recorded = recorded.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let invocation_type = headers
                        .get("x-amz-invocation-type")
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let payload = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    recorded
                        .lock()
                        .unwrap()
                        .push((name.clone(), invocation_type, payload));
                    let (status, kind) = if name.contains("throttled") {
                        (429, "TooManyRequestsException")
                    } else if name.contains("missing") {
                        (404, "ResourceNotFoundException")
                    } else {
                        (202, "")
                    };
                    let mut response = axum::response::Response::builder()
                        .status(status)
                        .header("content-type", "application/json");
                    if !kind.is_empty() {
                        response = response.header("x-amzn-errortype", kind);
                    }
                    response
                        .body(axum::body::Body::from(
                            json!({"Type": "User", "message": format!("{kind} for {name}")})
                                .to_string(),
                        ))
                        .unwrap()
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), calls, requests)
}

struct RouterSetup {
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    bucket: String,
    dlq: Queue,
    router: RouterFunction,
}

async fn router_setup(moto: &str, lambda_endpoint: Option<&str>) -> RouterSetup {
    let config = sdk_config(moto).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let s3 = s3_client(&config);
    let bucket = unique("rules");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let dlq = create_queue(&sqs, "router-dlq").await;
    let lambda_config = match lambda_endpoint {
        Some(endpoint) => aws_sdk_lambda::config::Builder::from(&sdk_config(endpoint).await)
            .retry_config(
                aws_sdk_lambda::config::retry::RetryConfig::standard().with_max_attempts(2),
            )
            .build(),
        None => aws_sdk_lambda::config::Builder::from(&config).build(),
    };
    let router = RouterFunction::new(
        S3Rules::new(s3.clone(), bucket.clone(), "rules.json".into()),
        Destinations::new(
            aws_sdk_lambda::Client::from_conf(lambda_config),
            sqs.clone(),
        ),
        SqsDeadLetterQueue::new(sqs.clone(), dlq.url.clone()),
    );
    RouterSetup {
        sqs,
        s3,
        bucket,
        dlq,
        router,
    }
}

#[tokio::test]
async fn router_delivers_the_mixed_fixture_and_dead_letters_the_poison_record() {
    let Some(moto) = moto_url() else { return };
    let setup = router_setup(&moto, None).await;
    let archive = create_queue(&setup.sqs, "archive").await;
    let logins = create_queue(&setup.sqs, "logins").await;
    put_rules(
        &setup.s3,
        &setup.bucket,
        &json!([
            {"destination_name": "archive", "destination_arn": archive.arn, "enabled_events": ["*"]},
            {"destination_name": "logins", "destination_arn": logins.arn, "enabled_events": ["login"]},
        ]),
    )
    .await;
    let event = mixed_event();
    let response = setup.router.handle(event.clone()).await.unwrap();
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );

    let archived = events_in(&setup.sqs, &archive.url, "archive").await;
    let reference: Value = serde_json::from_str(&data("kpl-aggregated-10.json")).unwrap();
    let expected = reference["user_records"].as_array().unwrap();
    assert_eq!(archived.len(), 11, "{archived:#?}");
    let ids: HashSet<&str> = archived.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 11);
    // The raw record's envelope had no received_at: the router took approximateArrivalTimestamp.
    let raw = archived
        .iter()
        .find(|e| e["id"] == "0192f0c4-1b2a-7c3d-8e4f-000000000100")
        .unwrap();
    assert_eq!(raw["received_at"], "2026-11-18T11:06:40.123Z");
    // The aggregated record's ten, as the reference aggregator wrote them, in order.
    let aggregated: Vec<&Value> = archived
        .iter()
        .filter(|e| e["source"] == "server")
        .collect();
    assert_eq!(aggregated.len(), 10);
    for (got, want) in aggregated.iter().zip(expected) {
        let want: Value = serde_json::from_str(want["data_utf8"].as_str().unwrap()).unwrap();
        assert_eq!(got["id"], want["id"]);
        assert_eq!(got["name"], want["name"]);
        assert_eq!(got["data"], want["data"]);
    }
    let logged_in = events_in(&setup.sqs, &logins.url, "logins").await;
    let expected_logins = archived.iter().filter(|e| e["name"] == "login").count();
    assert!(expected_logins >= 2);
    assert_eq!(logged_in.len(), expected_logins);
    assert!(logged_in.iter().all(|e| e["name"] == "login"));

    let poison = drain(&setup.sqs, &setup.dlq.url).await;
    assert_eq!(poison.len(), 1);
    let body: Value = serde_json::from_str(poison[0].body().unwrap()).unwrap();
    let record = &event.records[2].kinesis;
    assert_eq!(body["kind"], "poison_record");
    assert_eq!(body["sequence_number"], record.sequence_number.as_str());
    assert_eq!(body["shard_id"], "shardId-000000000000");
    assert_eq!(
        body["payload_base64"],
        base64::engine::general_purpose::STANDARD.encode(&record.data.0)
    );
    assert!(!body["error"].as_str().unwrap().is_empty());

    // The rules change in S3: the next batch follows the new file (its ETag changed).
    put_rules(
        &setup.s3,
        &setup.bucket,
        &json!([
            {"destination_name": "logins", "destination_arn": logins.arn, "enabled_events": ["page_view"]},
        ]),
    )
    .await;
    let response = setup.router.handle(mixed_event()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert!(
        events_in(&setup.sqs, &archive.url, "archive")
            .await
            .is_empty()
    );
    let page_views = events_in(&setup.sqs, &logins.url, "logins").await;
    assert_eq!(
        page_views.len(),
        archived.iter().filter(|e| e["name"] == "page_view").count()
    );
    assert!(page_views.iter().all(|e| e["name"] == "page_view"));
    drain(&setup.sqs, &setup.dlq.url).await;
}

#[tokio::test]
async fn a_transient_destination_failure_reports_only_its_records() {
    let Some(moto) = moto_url() else { return };
    let (lambda, calls, requests) = lambda_stand_in().await;
    let setup = router_setup(&moto, Some(&lambda)).await;
    let archive = create_queue(&setup.sqs, "archive").await;
    put_rules(
        &setup.s3,
        &setup.bucket,
        &json!([
            {"destination_name": "archive", "destination_arn": archive.arn, "enabled_events": ["*"]},
            // Only the aggregated record carries button_click events.
            {"destination_name": "crm", "destination_arn":
                "arn:aws:lambda:us-east-1:123456789012:function:throttled-crm",
             "enabled_events": ["button_click"]},
            {"destination_name": "analytics", "destination_arn":
                "arn:aws:lambda:us-east-1:123456789012:function:analytics",
             "enabled_events": ["login", "page_view"]},
        ]),
    )
    .await;
    let event = mixed_event();
    let response = setup.router.handle(event.clone()).await.unwrap();
    let reported: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(reported, vec![sequence_numbers(&event)[1].clone()]);
    assert_eq!(
        events_in(&setup.sqs, &archive.url, "archive").await.len(),
        11
    );
    // analytics once, crm twice (the client's two attempts).
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // The request a Lambda-ARN destination gets: an asynchronous invoke of the function named
    // by the ARN, with the router's payload of every event the rule enables.
    let requests = requests.lock().unwrap().clone();
    let (_, invocation_type, payload) = requests
        .iter()
        .find(|(name, _, _)| name.ends_with("analytics"))
        .unwrap();
    assert_eq!(invocation_type, "Event");
    assert_eq!(payload["destination"], "analytics");
    let names: Vec<&str> = payload["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(names.iter().all(|n| *n == "login" || *n == "page_view"));
    assert_eq!(
        names.len(),
        11 - names_in_fixture(&["button_click"]),
        "every login and page_view of the batch, in one invoke"
    );
    let dead: Vec<_> = drain(&setup.sqs, &setup.dlq.url).await;
    assert_eq!(dead.len(), 1, "only the poison record");
}

#[tokio::test]
async fn a_permanent_destination_failure_is_dead_lettered_not_reported() {
    let Some(moto) = moto_url() else { return };
    let (lambda, _, _) = lambda_stand_in().await;
    let setup = router_setup(&moto, Some(&lambda)).await;
    put_rules(
        &setup.s3,
        &setup.bucket,
        &json!([
            {"destination_name": "gone", "destination_arn":
                "arn:aws:lambda:us-east-1:123456789012:function:missing-gone",
             "enabled_events": ["login"]},
        ]),
    )
    .await;
    let response = setup.router.handle(mixed_event()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let mut dead_letters = Vec::new();
    let mut poison = 0;
    for message in drain(&setup.sqs, &setup.dlq.url).await {
        let body: Value = serde_json::from_str(message.body().unwrap()).unwrap();
        if body["kind"] == "poison_record" {
            poison += 1;
        } else {
            dead_letters.push(body);
        }
    }
    assert_eq!(poison, 1);
    assert_eq!(dead_letters.len(), 1);
    let message = &dead_letters[0];
    assert_eq!(message["v"], 1);
    assert_eq!(message["destination"], "gone");
    assert_eq!(message["error"]["class"], "permanent");
    assert_eq!(message["error"]["status"], 404);
    assert!(
        message["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["name"] == "login")
    );
    assert!(message["events"].as_array().unwrap().len() >= 2);
}

#[tokio::test]
async fn a_rules_file_with_an_unusable_arn_is_refused_at_load() {
    let Some(moto) = moto_url() else { return };
    let setup = router_setup(&moto, None).await;
    put_rules(
        &setup.s3,
        &setup.bucket,
        &json!([{"destination_name": "archive", "destination_arn": "local", "enabled_events": ["*"]}]),
    )
    .await;
    let error = setup.router.handle(mixed_event()).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("\"local\" is neither a Lambda function ARN"),
        "{error}"
    );
}

fn ingest_settings(rate_limit_per_key: u32) -> IngestSettings {
    IngestSettings {
        write_keys: vec!["test-write-key".into()],
        allowed_origins: vec!["*".into()],
        rate_limit_per_key,
        ip_mode: Default::default(),
    }
}

#[tokio::test]
async fn ingest_answers_every_status_through_api_gateway() {
    let Some(moto) = moto_url() else { return };
    let config = sdk_config(&moto).await;
    let kinesis = aws_sdk_kinesis::Client::new(&config);
    let stream = create_stream(&kinesis, "ingest", 1).await;
    let sink = KinesisSink::new(
        &config,
        &stream,
        Duration::from_secs(5),
        StreamWrites::for_concurrency(1),
    )
    .await
    .unwrap();
    let router = ingest::router(Arc::new(sink.clone()), &ingest_settings(0));
    let cases: Value = serde_json::from_str(&data("apigw-rest-requests.json")).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    let mut accepted_ids = Vec::new();
    for case in cases {
        let response = call_ingest(&router, &case["request"]).await;
        assert_eq!(
            response["statusCode"], case["status"],
            "{}: {response:#}",
            case["name"]
        );
        let body: Value = match response["body"].as_str() {
            Some(text) if response["isBase64Encoded"] == true => serde_json::from_slice(
                &base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .unwrap(),
            )
            .unwrap_or(Value::Null),
            Some(text) => serde_json::from_str(text).unwrap_or(Value::Null),
            None => Value::Null,
        };
        match case["status"].as_u64().unwrap() {
            200 if case["request"]["httpMethod"] == "POST" => {
                assert!(body["accepted"].as_u64().unwrap() >= 1, "{body}");
                let request_body = match case["request"]["isBase64Encoded"].as_bool() {
                    Some(true) => {
                        String::from_utf8(flate2_decode(case["request"]["body"].as_str().unwrap()))
                            .unwrap()
                    }
                    _ => case["request"]["body"].as_str().unwrap().to_owned(),
                };
                let request_body: Value = serde_json::from_str(&request_body).unwrap();
                let events = match request_body.get("batch") {
                    Some(batch) => batch.as_array().unwrap().clone(),
                    None => vec![request_body],
                };
                accepted_ids.extend(
                    events
                        .iter()
                        .filter_map(|e| e["id"].as_str().map(str::to_owned)),
                );
                if body["rejected"].as_array().is_some_and(|r| !r.is_empty()) {
                    assert_eq!(body["rejected"][0]["index"], 2);
                }
            }
            400 | 401 | 413 | 415 => assert!(body["error"]["code"].is_string(), "{body}"),
            _ => {}
        }
        if case["request"]["httpMethod"] == "OPTIONS" {
            let headers = &response["multiValueHeaders"];
            let allowed = headers
                .get("access-control-allow-origin")
                .or_else(|| response["headers"].get("access-control-allow-origin"));
            assert!(allowed.is_some(), "{response:#}");
        }
    }

    // 429: a rate-limited ingest (1 event per second per key): the first batch of three takes
    // the key into debt, the next one waits, with Retry-After.
    let limited = ingest::router(Arc::new(sink.clone()), &ingest_settings(1));
    let response = call_ingest(&limited, &cases[0]["request"]).await;
    assert_eq!(response["statusCode"], 200, "{response:#}");
    let response = call_ingest(&limited, &cases[0]["request"]).await;
    assert_eq!(response["statusCode"], 429, "{response:#}");
    assert!(
        response["multiValueHeaders"]["retry-after"].is_array(),
        "{response:#}"
    );

    // 503: a stream that does not exist; the client is told to retry.
    let missing = KinesisSink::new(
        &config,
        &unique("no-such-stream"),
        Duration::from_secs(1),
        StreamWrites::for_concurrency(1),
    )
    .await
    .unwrap();
    let unavailable = ingest::router(Arc::new(missing), &ingest_settings(0));
    let response = call_ingest(&unavailable, &cases[0]["request"]).await;
    assert_eq!(response["statusCode"], 503, "{response:#}");

    // Every accepted event is in the stream (de-aggregated), each id at least once.
    let mut stored_ids = HashSet::new();
    for (_, records) in read_stream(&kinesis, &stream).await {
        for record in &records {
            // The ingest compresses its records (gzip by default).
            assert!(kinesis::is_compressed(record.data().as_ref()));
            for envelope in envelopes_in(record) {
                assert!(envelope["received_at"].is_string());
                stored_ids.insert(envelope["id"].as_str().unwrap().to_owned());
            }
        }
    }
    for id in &accepted_ids {
        assert!(stored_ids.contains(id), "{id} is not in the stream");
    }
    assert_eq!(accepted_ids.len(), 5);
    delete_stream(&kinesis, &stream).await;
}

fn flate2_decode(base64_gzip: &str) -> Vec<u8> {
    use std::io::Read;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64_gzip)
        .unwrap();
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut text)
        .unwrap();
    text
}

#[tokio::test]
async fn connector_delivers_payloads_and_sqs_events_and_dead_letters_itself() {
    let Some(moto) = moto_url() else { return };
    let config = sdk_config(&moto).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let dlq = create_queue(&sqs, "connector-dlq").await;
    let folder = tempfile::tempdir().unwrap();
    let archive = folder.path().join("archive.jsonl");
    let config_text = format!(
        "[destinations.archive]\nkind = \"jsonl\"\npath = {:?}\n\n\
         [destinations.hooks]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/events\"\n\
         timeout_ms = 500\nretry = {{ max_attempts = 2, base_delay_ms = 10, max_delay_ms = 10 }}\n",
        archive.display().to_string()
    );
    let settings = connector_config(&config_text, &std::env::temp_dir());
    let sqs_dlq = Arc::new(SqsDeadLetterQueue::new(sqs.clone(), dlq.url.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);

    let archive_connector = ConnectorFunction::new(&settings, "archive", sqs_dlq.clone()).unwrap();
    let events: Vec<Value> = (0..3)
        .map(|i| json!({"id": format!("id-{i}"), "name": "login", "data": {"i": i}}))
        .collect();
    let answer = archive_connector
        .handle(
            json!({"destination": "archive", "events": events}),
            deadline,
        )
        .await
        .unwrap();
    assert_eq!(answer, json!({"delivered": 3, "dead_lettered": 0}));

    let sqs_event = json!({"Records": [
        {"messageId": "m-1", "receiptHandle": "r-1", "eventSource": "aws:sqs",
         "body": json!({"destination": "archive", "events": [{"id": "id-3", "name": "login", "data": {}}]}).to_string(),
         "attributes": {}, "messageAttributes": {}},
        {"messageId": "m-2", "receiptHandle": "r-2", "eventSource": "aws:sqs",
         "body": "not a payload", "attributes": {}, "messageAttributes": {}},
    ]});
    let answer = archive_connector.handle(sqs_event, deadline).await.unwrap();
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "m-2"}]})
    );
    let lines: Vec<Value> = std::fs::read_to_string(&archive)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["id-0", "id-1", "id-2", "id-3"]
    );

    // A destination that cannot be reached: two attempts, then the DLQ message, and success.
    let hooks = ConnectorFunction::new(&settings, "hooks", sqs_dlq).unwrap();
    let answer = hooks
        .handle(
            json!({"destination": "hooks", "events": [{"id": "id-9", "name": "login", "data": {}}]}),
            deadline,
        )
        .await
        .unwrap();
    assert_eq!(answer, json!({"delivered": 0, "dead_lettered": 1}));
    let messages = drain(&sqs, &dlq.url).await;
    assert_eq!(messages.len(), 1);
    let body: Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    assert_eq!(body["v"], 1);
    assert_eq!(body["destination"], "hooks");
    assert_eq!(body["attempts"], 2);
    assert_eq!(body["error"]["class"], "retryable");
    assert_eq!(body["events"][0]["id"], "id-9");
    let attributes: BTreeMap<String, String> = messages[0]
        .message_attributes()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.string_value().unwrap_or_default().to_owned()))
        .collect();
    assert_eq!(attributes["destination"], "hooks");
    assert_eq!(attributes["error_class"], "retryable");
    assert_eq!(attributes["attempts"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_records_and_a_request_alone_does_not_linger() {
    let Some(moto) = moto_url() else { return };
    let config = sdk_config(&moto).await;
    let kinesis = aws_sdk_kinesis::Client::new(&config);
    let stream = create_stream(&kinesis, "group-commit", 1).await;
    let ingest_with_linger = |linger: Duration| {
        let config = config.clone();
        let stream = stream.clone();
        async move {
            let writes = StreamWrites {
                linger,
                ..StreamWrites::for_concurrency(16)
            };
            let sink = KinesisSink::new(&config, &stream, Duration::from_secs(90), writes)
                .await
                .unwrap();
            ingest::router(Arc::new(sink), &ingest_settings(0))
        }
    };
    let batch = |request: usize| -> Vec<Value> {
        (0..20)
            .map(|index| {
                json!({"id": format!("gc-{request}-{index}"), "name": "page_view",
                       "data": {"i": index}, "anonymous_id": format!("client-{request}")})
            })
            .collect()
    };

    // Alone: flushed at once. Its records could not go before the linger (a minute) otherwise.
    let router = ingest_with_linger(Duration::from_secs(60)).await;
    let response = tokio::time::timeout(
        Duration::from_secs(30),
        call_ingest(&router, &batch_request(&batch(0), "test-write-key")),
    )
    .await
    .expect("a request alone is answered without waiting for the linger");
    assert_eq!(response["statusCode"], 200, "{response:#}");
    let records_before = read_stream(&kinesis, &stream).await[0].1.len();
    assert_eq!(records_before, 1);

    // Eight at once: the first to arrive flushes what is staged; the others' events wait in the
    // shard's open aggregate, together, for the linger.
    let router = ingest_with_linger(Duration::from_secs(2)).await;
    let mut waiting = tokio::task::JoinSet::new();
    for request in 1..=8 {
        let router = router.clone();
        let body = batch_request(&batch(request), "test-write-key");
        waiting.spawn(async move { call_ingest(&router, &body).await });
    }
    while let Some(response) = waiting.join_next().await {
        assert_eq!(response.unwrap()["statusCode"], 200);
    }
    let records = read_stream(&kinesis, &stream).await.remove(0).1;
    let new_records = &records[records_before..];
    let ids: HashSet<String> = new_records
        .iter()
        .flat_map(envelopes_in)
        .map(|envelope| envelope["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids.len(),
        160,
        "every event of the eight requests is in the stream"
    );
    assert!(
        new_records.len() <= 3,
        "eight concurrent requests share records (each alone makes 8): {} records",
        new_records.len()
    );
    delete_stream(&kinesis, &stream).await;
}
