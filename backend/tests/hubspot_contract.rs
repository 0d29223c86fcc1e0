//! The HubSpot connector against local custom-event endpoints built from HubSpot's
//! documentation (`tests/data/vendor/hubspot/`, each file with its source URL): the requests it
//! sends (paths, Bearer token, bodies, batch sizes, pacing) and what it makes of every
//! documented answer.

mod common;
mod contract;

use std::time::{Duration, Instant};

use common::{Server, batch, config_with, eventually, post as post_events, text};
use contract::hubspot::HubspotApi;
use contract::{Scripted, dlq_messages, files_containing, outgoing, vendor_file};
use serde_json::{Value, json};
use tributary_backend::config::HubspotIdentity;
use tributary_backend::connectors::hubspot::{HubspotConnector, HubspotMapping};
use tributary_backend::connectors::{Connector, Delivery, FailureClass};

const TOKEN: &str = "pat-na1-7c2d9e4f-1b3a-4c5d-8e6f-0a1b2c3d4e5f";
const LOGIN: &str = "pe1234567_login";
const SEARCH: &str = "pe1234567_search";

async fn portal(requests_per_10s: usize) -> HubspotApi {
    HubspotApi::start(
        TOKEN,
        &[(LOGIN, &["method", "n"]), (SEARCH, &["query", "n"])],
        requests_per_10s,
    )
    .await
}

fn mapping() -> HubspotMapping {
    HubspotMapping {
        event_names: [("login".to_owned(), LOGIN.to_owned())].into(),
        event_name_prefix: Some("pe1234567_".into()),
        identity: HubspotIdentity::default(),
    }
}

fn connector(api: &HubspotApi, requests_per_10s: u32, timeout: Duration) -> HubspotConnector {
    HubspotConnector::new(&api.url, TOKEN.into(), mapping(), requests_per_10s, timeout).unwrap()
}

fn envelope(n: usize, name: &str) -> Value {
    json!({
        "id": format!("0190a6d4-1f2e-7c3b-9a4d-{n:012}"),
        "name": name,
        "data": {"n": n},
        "timestamp": "2026-01-15T10:00:00.250Z",
        "received_at": "2026-01-15T10:00:01Z",
        "user_id": format!("user-{n}"),
        "context": {"traits": {"email": format!("user-{n}@example.com")}}
    })
}

#[tokio::test]
async fn the_stand_in_answers_the_documented_examples() {
    let api = portal(100).await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: &Value, token: &str| {
        client
            .post(format!("{}{path}", api.url))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    // The documented request with its placeholders filled in.
    let mut occurrence = vendor_file("hubspot/send-request.json")["body"].clone();
    occurrence["eventName"] = json!(LOGIN);
    occurrence["email"] = json!("someone@example.com");
    occurrence["objectId"] = json!("1234");
    occurrence["utk"] = json!("5f2c8e1a");
    occurrence["uuid"] = json!("0190a6d4-1f2e-7c3b-9a4d-5e6f7a8b9c0d");
    let answer = post("/events/v3/send", &occurrence, TOKEN).await.unwrap();
    assert_eq!(answer.status(), 204);
    let headers = answer.headers();
    for name in [
        "x-hubspot-ratelimit-max",
        "x-hubspot-ratelimit-remaining",
        "x-hubspot-ratelimit-interval-milliseconds",
    ] {
        assert!(headers.contains_key(name), "{name}");
    }
    let mut batch_body = vendor_file("hubspot/send-batch-request.json")["body"].clone();
    batch_body["inputs"][0] = occurrence.clone();
    let answer = post("/events/v3/send/batch", &batch_body, TOKEN)
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    assert_eq!(api.stored().len(), 1, "the same uuid is stored once");

    let answer = post("/events/v3/send", &occurrence, "pat-wrong")
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);

    occurrence["eventName"] = json!("pe1234567_undefined");
    let answer = post("/events/v3/send", &occurrence, TOKEN).await.unwrap();
    assert_eq!(answer.status(), 400);
    let body: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    let documented = vendor_file("hubspot/400-validation-error.json")["body"].clone();
    let keys = |value: &Value| {
        value
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&body), keys(&documented));
    assert_eq!(body["category"], "VALIDATION_ERROR");
}

#[tokio::test]
async fn requests_follow_the_documented_format() {
    let api = portal(100).await;
    let hubspot = connector(&api, 100, Duration::from_secs(5));
    let single = [outgoing(&envelope(0, "login"))];
    assert_eq!(hubspot.deliver(&single).await, Delivery::Delivered);
    let events: Vec<_> = (1..4).map(|n| outgoing(&envelope(n, "search"))).collect();
    assert_eq!(hubspot.deliver(&events).await, Delivery::Delivered);

    let requests = api.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].path, "/events/v3/send",
        "one event: the single form"
    );
    assert_eq!(requests[1].path, "/events/v3/send/batch");
    let documented = vendor_file("hubspot/send-request.json");
    let documented_keys: Vec<&String> = documented["body"].as_object().unwrap().keys().collect();
    for request in &requests {
        assert_eq!(request.authorization, format!("Bearer {TOKEN}"));
        assert_eq!(request.content_type, "application/json");
        for occurrence in request.occurrences() {
            for key in occurrence.as_object().unwrap().keys() {
                assert!(
                    documented_keys.contains(&key),
                    "{key} is a documented field"
                );
            }
        }
    }
    assert_eq!(
        requests[0].body,
        json!({
            "eventName": LOGIN,
            "uuid": "0190a6d4-1f2e-7c3b-9a4d-000000000000",
            "occurredAt": "2026-01-15T10:00:00.25Z",
            "email": "user-0@example.com",
            "properties": {"n": 0}
        })
    );
    let batch = requests[1].occurrences();
    assert_eq!(batch.len(), 3);
    assert_eq!(batch[0]["eventName"], SEARCH, "the prefix and the name");
    assert_eq!(api.stored().len(), 4);
}

#[tokio::test]
async fn batches_keep_to_500_occurrences_per_request() {
    let api = portal(1_000).await;
    let hubspot = connector(&api, 1_000, Duration::from_secs(10));
    let events: Vec<_> = (0..1_200)
        .map(|n| outgoing(&envelope(n, "search")))
        .collect();
    assert_eq!(hubspot.deliver(&events).await, Delivery::Delivered);
    let sizes: Vec<usize> = api
        .requests()
        .iter()
        .map(|r| r.occurrences().len())
        .collect();
    assert_eq!(sizes, [500, 500, 200]);
    assert_eq!(api.stored().len(), 1_200);
}

#[tokio::test]
async fn a_400_validation_error_is_permanent_with_hubspot_s_reason() {
    let api = portal(100).await;
    let hubspot = connector(&api, 100, Duration::from_secs(5));
    let events = [
        outgoing(&envelope(0, "search")),
        outgoing(&envelope(1, "undefined_event")),
    ];
    // HubSpot refuses the batch whole; its halves go again: the valid event is delivered, the
    // invalid one dead-lettered with HubSpot's reason.
    let delivery = hubspot.deliver(&events).await;
    let Delivery::Partial(failures) = delivery else {
        panic!("{delivery:?}")
    };
    assert_eq!(failures.len(), 1);
    let (index, failure) = &failures[0];
    assert_eq!(*index, 1);
    assert_eq!(failure.class, FailureClass::Permanent);
    assert_eq!(failure.status, Some(400));
    assert!(
        failure
            .message
            .starts_with("HubSpot: HTTP 400 VALIDATION_ERROR: "),
        "{}",
        failure.message
    );
    assert!(
        failure
            .message
            .contains("eventName: Event \"pe1234567_undefined_event\" is not defined"),
        "{}",
        failure.message
    );
    assert_eq!(api.stored().len(), 1, "the valid event is delivered");
    assert_eq!(
        api.requests().len(),
        3,
        "the batch, then each half; nothing retried"
    );

    // An event HubSpot cannot associate with a record is refused before sending.
    let mut anonymous = envelope(2, "search");
    anonymous.as_object_mut().unwrap().remove("context");
    let delivery = hubspot
        .deliver(&[outgoing(&envelope(3, "search")), outgoing(&anonymous)])
        .await;
    let Delivery::Partial(failures) = delivery else {
        panic!("{delivery:?}")
    };
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, 1);
    assert!(failures[0].1.message.contains("no email, objectId or utk"));
    assert_eq!(api.stored().len(), 2);
}

#[tokio::test]
async fn a_refused_batch_is_bisected_until_only_the_invalid_events_fail() {
    let api = portal(1_000).await;
    let hubspot = connector(&api, 1_000, Duration::from_secs(5));
    let invalid = [3, 7, 40];
    let events: Vec<_> = (0..64)
        .map(|n| {
            let name = if invalid.contains(&n) {
                "undefined_event"
            } else {
                "search"
            };
            outgoing(&envelope(n, name))
        })
        .collect();
    let delivery = hubspot.deliver(&events).await;
    let Delivery::Partial(failures) = delivery else {
        panic!("{delivery:?}")
    };
    let failed: Vec<usize> = failures.iter().map(|(index, _)| *index).collect();
    assert_eq!(failed, invalid);
    assert!(failures.iter().all(|(_, failure)| {
        failure.status == Some(400) && failure.class == FailureClass::Permanent
    }));
    assert_eq!(
        api.stored().len(),
        61,
        "every valid event is delivered, once"
    );
    // The batch, then two halves per level on the way down to each invalid event.
    let requests = api.requests().len();
    assert!(requests <= 1 + 2 * 3 * 6, "{requests} requests");

    // A retryable answer while bisecting stops it: the rest waits for the retry.
    let api = portal(1_000).await;
    let hubspot = connector(&api, 1_000, Duration::from_secs(5));
    api.script([Scripted::Status(400), Scripted::Status(503)]);
    let delivery = hubspot.deliver(&events[..4]).await;
    let Delivery::Failed(failure) = delivery else {
        panic!("{delivery:?}")
    };
    assert_eq!(failure.class, FailureClass::Retryable);
    assert_eq!(
        api.requests().len(),
        2,
        "the batch, then its first half; no more"
    );
}

#[tokio::test]
async fn a_429_is_retried_after_hubspot_s_window_or_retry_after() {
    let api = portal(100).await;
    let hubspot = connector(&api, 100, Duration::from_secs(5));
    let events = [
        outgoing(&envelope(0, "login")),
        outgoing(&envelope(1, "search")),
    ];

    api.script([Scripted::Status(429)]);
    let Delivery::Failed(failure) = hubspot.deliver(&events).await else {
        panic!()
    };
    let documented = vendor_file("hubspot/429-rate-limit.json");
    assert_eq!(failure.class, FailureClass::Retryable);
    assert_eq!(failure.status, Some(429));
    assert_eq!(
        failure.retry_after,
        Some(Duration::from_millis(10_000)),
        "X-HubSpot-RateLimit-Remaining: 0 → wait X-HubSpot-RateLimit-Interval-Milliseconds"
    );
    assert_eq!(
        failure.message,
        format!(
            "HubSpot: HTTP 429 TEN_SECONDLY_ROLLING: {}",
            documented["ten_secondly"]["body"]["message"]
                .as_str()
                .unwrap()
        )
    );

    api.script([Scripted::Raw(
        429,
        documented["body"].to_string(),
        vec![("Retry-After".into(), "3".into())],
    )]);
    let Delivery::Failed(failure) = hubspot.deliver(&events).await else {
        panic!()
    };
    assert_eq!(
        failure.retry_after,
        Some(Duration::from_secs(3)),
        "Retry-After first"
    );
    assert!(failure.message.contains("DAILY"), "{}", failure.message);

    api.script([Scripted::Status(502)]);
    let Delivery::Failed(failure) = hubspot.deliver(&events).await else {
        panic!()
    };
    assert_eq!(failure.class, FailureClass::Retryable);
    assert_eq!(failure.status, Some(502));

    assert_eq!(hubspot.deliver(&events).await, Delivery::Delivered);
}

#[tokio::test]
async fn the_portal_s_own_limit_answers_429_with_its_headers() {
    // The connector is told 100 per 10 s; the portal allows only 10.
    let api = portal(10).await;
    let hubspot = connector(&api, 100, Duration::from_secs(5));
    let mut limited = None;
    for n in 0..11 {
        if let Delivery::Failed(failure) =
            hubspot.deliver(&[outgoing(&envelope(n, "search"))]).await
        {
            limited = Some(failure);
            break;
        }
    }
    let failure = limited.expect("the 11th request within 10 s is refused");
    assert_eq!(failure.status, Some(429));
    assert_eq!(failure.class, FailureClass::Retryable);
    assert!(failure.retry_after.is_some());
    assert_eq!(api.stored().len(), 10);
}

#[tokio::test]
async fn the_token_bucket_keeps_to_requests_per_10s() {
    let api = portal(20).await;
    // 20 per 10 s: bursts of 2, then 1.8 per second.
    let hubspot = connector(&api, 20, Duration::from_secs(5));
    let started = Instant::now();
    for n in 0..8 {
        assert_eq!(
            hubspot.deliver(&[outgoing(&envelope(n, "search"))]).await,
            Delivery::Delivered,
            "never over the portal's limit"
        );
    }
    let requests = api.requests();
    let span = requests[7].at - requests[0].at;
    assert!(
        span >= Duration::from_millis(3_100),
        "6 requests after the burst of 2 at 1.8/s take 3.3 s, took {span:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(requests.iter().all(|r| r.status == 204));
}

#[tokio::test]
async fn refusals_timeouts_and_echoed_tokens() {
    let api = portal(100).await;
    let events = [outgoing(&envelope(0, "login"))];

    let wrong = HubspotConnector::new(
        &api.url,
        "pat-na1-wrong-token".into(),
        mapping(),
        100,
        Duration::from_secs(5),
    )
    .unwrap();
    let Delivery::Failed(failure) = wrong.deliver(&events).await else {
        panic!()
    };
    assert_eq!(failure.class, FailureClass::Permanent);
    assert_eq!(failure.status, Some(401));
    assert!(
        failure.message.contains("INVALID_AUTHENTICATION"),
        "{}",
        failure.message
    );

    let hubspot = connector(&api, 100, Duration::from_millis(300));
    api.script([Scripted::Slow(Duration::from_secs(1))]);
    let Delivery::Failed(failure) = hubspot.deliver(&events).await else {
        panic!()
    };
    assert_eq!(failure.class, FailureClass::Retryable);
    assert!(failure.message.contains("timed out"), "{}", failure.message);
    assert_eq!(hubspot.deliver(&events).await, Delivery::Delivered);
    assert_eq!(api.stored().len(), 1, "the retry has the same uuid");

    api.script([Scripted::Raw(
        403,
        format!(r#"{{"status":"error","message":"Token {TOKEN} lacks scope analytics.behavioral_events.send","category":"MISSING_SCOPES"}}"#),
        vec![],
    )]);
    let Delivery::Failed(failure) = hubspot.deliver(&events).await else {
        panic!()
    };
    assert_eq!(failure.class, FailureClass::Permanent);
    assert!(!failure.message.contains(TOKEN), "{}", failure.message);
    assert!(
        failure.message.contains("Token [redacted] lacks scope"),
        "{}",
        failure.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_retries_the_rate_limit_and_dead_letters_refusals_without_the_token() {
    let api = portal(100).await;
    api.script([Scripted::Status(429)]);
    let config = config_with(&format!(
        r#"
[destinations.crm]
kind = "hubspot"
endpoint = "{}"
token_env = "TEST_HUBSPOT_TOKEN"
event_names = {{ login = "{LOGIN}" }}
event_name_prefix = "pe1234567_"
requests_per_10s = 100
retry = {{ max_attempts = 4, base_delay_ms = 50, max_delay_ms = 300 }}
"#,
        api.url
    ));
    let rules =
        r#"[{"destination_name": "crm", "destination_arn": "local", "enabled_events": ["*"]}]"#;
    let server = Server::start_with_env(&config, rules, &[("TEST_HUBSPOT_TOKEN", TOKEN)]);
    let mut events = vec![
        envelope(0, "login"),
        envelope(1, "search"),
        envelope(2, "search"),
    ];
    events[2].as_object_mut().unwrap().remove("context");
    let answer = post_events(&server.url("/v1/batch"), batch(&events)).await;
    assert_eq!(answer.status(), 200);

    let data = server.path("data");
    eventually(Duration::from_secs(15), "delivered after the 429", || {
        api.stored().len() == 2
    })
    .await;
    eventually(
        Duration::from_secs(5),
        "the anonymous event dead-lettered",
        || dlq_messages(&data).len() == 1,
    )
    .await;
    let message = &dlq_messages(&data)[0];
    assert_eq!(
        message["events"][0]["id"],
        "0190a6d4-1f2e-7c3b-9a4d-000000000002"
    );
    assert_eq!(message["error"]["class"], "permanent");
    // The 429 waited the portal's 10 s window, capped by max_delay_ms (300 ms).
    let requests = api.requests();
    assert_eq!(requests[0].status, 429);
    let gap = requests[1].at - requests[0].at;
    assert!(
        gap >= Duration::from_millis(250) && gap < Duration::from_secs(3),
        "{gap:?}"
    );

    // A refusal that echoes the token: nowhere in the DLQ, the log or the CLI.
    api.script([Scripted::Raw(
        401,
        format!(r#"{{"status":"error","message":"Authentication credentials not found: {TOKEN}","category":"INVALID_AUTHENTICATION"}}"#),
        vec![],
    )]);
    let answer = post_events(&server.url("/v1/batch"), batch(&[envelope(5, "login")])).await;
    assert_eq!(answer.status(), 200);
    eventually(Duration::from_secs(10), "the 401 dead-lettered", || {
        dlq_messages(&data).len() == 2
    })
    .await;
    assert!(
        dlq_messages(&data)[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[redacted]")
    );
    assert!(!text(&server.cli(&["dlq", "list"])).contains(TOKEN));
    assert!(!server.log().contains(TOKEN));
    assert!(files_containing(server.folder.path(), TOKEN).is_empty());
}
