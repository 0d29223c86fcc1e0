//! The Mixpanel connector against a local `/import` built from Mixpanel's documentation
//! (`tests/data/vendor/mixpanel/`, each file with its source URL): the requests it sends (path,
//! query, auth, encoding, body, limits) and what it makes of every documented answer.

mod common;
mod contract;

use std::time::Duration;

use base64::Engine;
use common::{Server, batch, config_with, eventually, post as post_events, text};
use contract::mixpanel::{Account, MixpanelApi};
use contract::{Scripted, dlq_messages, files_containing, outgoing, vendor_file};
use serde_json::{Value, json};
use tributary_backend::connectors::mixpanel::{Credentials, MixpanelConnector};
use tributary_backend::connectors::{Connector, Delivery, FailureClass};

const TOKEN: &str = "mp-token-0b5e7c1d9a";

fn envelope(n: usize) -> Value {
    json!({
        "id": format!("0190a6d4-1f2e-7c3b-9a4d-{n:012}"),
        "name": "button_click",
        "data": {"button": "buy", "n": n},
        "timestamp": "2026-01-15T10:00:00.250Z",
        "received_at": "2026-01-15T10:00:01Z",
        "user_id": format!("user-{n}"),
        "anonymous_id": "anon-1",
        "context": {"library": {"name": "tributary-server", "version": "0.1.0"}}
    })
}

fn connector(api: &MixpanelApi, credentials: Credentials, timeout: Duration) -> MixpanelConnector {
    MixpanelConnector::new(&api.url, credentials, true, timeout).unwrap()
}

fn token() -> Credentials {
    Credentials::ProjectToken(TOKEN.into())
}

#[tokio::test]
async fn the_stand_in_answers_the_documented_examples() {
    let api = MixpanelApi::start(Account::Token(TOKEN.into())).await;
    let example = vendor_file("mixpanel/import-request.json");
    let client = reqwest::Client::new();
    let post = |body: Value, user: &str| {
        client
            .post(format!("{}/import?strict=1", api.url))
            .basic_auth(user, Some(""))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let answer = post(example["body"].clone(), TOKEN).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        serde_json::from_str::<Value>(&answer.text().await.unwrap()).unwrap(),
        example["success"]["body"],
        "the documented request is imported as documented"
    );

    let answer = post(example["body"].clone(), "wrong-token").await.unwrap();
    assert_eq!(answer.status(), 401);
    assert_eq!(
        serde_json::from_str::<Value>(&answer.text().await.unwrap()).unwrap(),
        vendor_file("mixpanel/401-unauthorized.json")["body"]
    );

    // The documented 400: a bad time fails alone, the other event is imported.
    let mut events = example["body"].clone();
    events[0]["properties"]["time"] = json!(0);
    events[1]["properties"]["$insert_id"] = json!("a1b2c3d4-0000-0000-0000-000000000001");
    let answer = post(events, TOKEN).await.unwrap();
    assert_eq!(answer.status(), 400);
    let body: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    let documented = vendor_file("mixpanel/400-partial-success.json")["body"].clone();
    let keys = |value: &Value| {
        value
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&body), keys(&documented));
    assert_eq!(
        keys(&body["failed_records"][0]),
        keys(&documented["failed_records"][0])
    );
    assert_eq!(body["num_records_imported"], 1);
    assert_eq!(body["failed_records"][0]["field"], "properties.time");
    assert_eq!(
        body["failed_records"][0]["message"],
        documented["failed_records"][0]["message"]
    );
}

#[tokio::test]
async fn requests_follow_the_documented_format() {
    let api = MixpanelApi::start(Account::Token(TOKEN.into())).await;
    let events: Vec<_> = (0..3).map(|n| outgoing(&envelope(n))).collect();
    let delivery = connector(&api, token(), Duration::from_secs(5))
        .deliver(&events)
        .await;
    assert_eq!(delivery, Delivery::Delivered);

    let requests = api.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path, "/import");
    assert_eq!(request.query.get("strict").map(String::as_str), Some("1"));
    assert!(!request.query.contains_key("project_id"));
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{TOKEN}:"))
    );
    assert_eq!(
        request.authorization, expected_auth,
        "token as user, empty password"
    );
    assert_eq!(request.content_type, "application/json");
    assert_eq!(request.content_encoding, "gzip");
    assert!(request.sent_bytes < request.uncompressed_bytes);

    // Each event has the documented shape: {event, properties: {time (ms), distinct_id,
    // $insert_id, …}} with the documented types.
    let documented = &vendor_file("mixpanel/import-request.json")["body"][0];
    for (n, event) in request.events.iter().enumerate() {
        let keys: Vec<_> = event.as_object().unwrap().keys().collect();
        let documented_keys: Vec<_> = documented.as_object().unwrap().keys().collect();
        assert_eq!(keys, documented_keys);
        for field in ["time", "distinct_id", "$insert_id"] {
            assert_eq!(
                std::mem::discriminant(&event["properties"][field]),
                std::mem::discriminant(&documented["properties"][field]),
                "{field} has the documented type"
            );
        }
        assert_eq!(event["event"], "button_click");
        assert_eq!(
            event["properties"]["time"], 1_768_471_200_250_i64,
            "ms since epoch"
        );
        assert_eq!(event["properties"]["distinct_id"], format!("user-{n}"));
        assert_eq!(
            event["properties"]["$insert_id"],
            format!("0190a6d4-1f2e-7c3b-9a4d-{n:012}"),
            "the event id"
        );
        assert_eq!(event["properties"]["n"], n);
        assert_eq!(event["properties"]["mp_lib"], "tributary-server");
    }
    assert_eq!(api.imported().len(), 3);
}

#[tokio::test]
async fn a_service_account_sends_its_project_id() {
    let api = MixpanelApi::start(Account::ServiceAccount {
        username: "tributary.1a2b3c.mp-service-account".into(),
        secret: "sa-secret-9f8e7d".into(),
        project_id: "2195193".into(),
    })
    .await;
    let credentials = Credentials::ServiceAccount {
        username: "tributary.1a2b3c.mp-service-account".into(),
        secret: "sa-secret-9f8e7d".into(),
        project_id: "2195193".into(),
    };
    let events = [outgoing(&envelope(1))];
    let delivery = connector(&api, credentials, Duration::from_secs(5))
        .deliver(&events)
        .await;
    assert_eq!(delivery, Delivery::Delivered);
    let request = &api.requests()[0];
    assert_eq!(
        request.query.get("project_id").map(String::as_str),
        Some("2195193")
    );
    assert_eq!(request.query.get("strict").map(String::as_str), Some("1"));
}

#[tokio::test]
async fn batches_keep_to_2000_events_and_10_mb_per_request() {
    let api = MixpanelApi::start(Account::Token(TOKEN.into())).await;
    let mixpanel = connector(&api, token(), Duration::from_secs(30));

    let events: Vec<_> = (0..2_500).map(|n| outgoing(&envelope(n))).collect();
    assert_eq!(mixpanel.deliver(&events).await, Delivery::Delivered);
    let counts: Vec<usize> = api.requests().iter().map(|r| r.events.len()).collect();
    assert_eq!(counts, [2_000, 500]);

    // Twelve events of ~900 KB: 10.8 MB, over the 10 MB limit in one request.
    let big: Vec<_> = (0..12)
        .map(|n| {
            let mut value = envelope(10_000 + n);
            value["data"]["blob"] = json!("x".repeat(900_000));
            outgoing(&value)
        })
        .collect();
    assert_eq!(mixpanel.deliver(&big).await, Delivery::Delivered);
    let requests = api.requests();
    let sizes: Vec<usize> = requests[2..].iter().map(|r| r.uncompressed_bytes).collect();
    assert_eq!(sizes.len(), 2, "{sizes:?}");
    assert!(
        sizes.iter().all(|size| *size <= 10 * 1024 * 1024),
        "{sizes:?}"
    );
    assert!(requests.iter().all(|r| r.status == 200));
    assert_eq!(api.imported().len(), 2_512);

    // An event over 1 MB is refused alone, before sending.
    let mut huge = envelope(20_000);
    huge["data"]["blob"] = json!("y".repeat(1_100_000));
    let delivery = mixpanel
        .deliver(&[outgoing(&envelope(20_001)), outgoing(&huge)])
        .await;
    let Delivery::Partial(failures) = delivery else {
        panic!("{delivery:?}")
    };
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, 1);
    assert_eq!(failures[0].1.class, FailureClass::Permanent);
    assert!(
        failures[0].1.message.contains("per event"),
        "{}",
        failures[0].1.message
    );
}

#[tokio::test]
async fn a_400_is_a_partial_success_naming_the_failed_records() {
    let api = MixpanelApi::start(Account::Token(TOKEN.into())).await;
    let mut too_old = envelope(1);
    too_old["timestamp"] = json!("1960-01-01T00:00:00Z");
    let mut placeholder = envelope(2);
    placeholder["user_id"] = json!("anonymous");
    let events = [
        outgoing(&envelope(0)),
        outgoing(&too_old),
        outgoing(&placeholder),
        outgoing(&envelope(3)),
    ];
    let delivery = connector(&api, token(), Duration::from_secs(5))
        .deliver(&events)
        .await;
    let Delivery::Partial(failures) = delivery else {
        panic!("{delivery:?}")
    };
    let indexes: Vec<usize> = failures.iter().map(|(index, _)| *index).collect();
    assert_eq!(indexes, [1, 2]);
    for (_, failure) in &failures {
        assert_eq!(failure.class, FailureClass::Permanent, "never retried");
        assert_eq!(failure.status, Some(400));
    }
    let documented = vendor_file("mixpanel/400-partial-success.json");
    let message = documented["body"]["failed_records"][0]["message"]
        .as_str()
        .unwrap();
    assert_eq!(
        failures[0].1.message,
        format!("Mixpanel rejected the event: properties.time: {message}")
    );
    assert!(failures[1].1.message.contains("properties.distinct_id"));
    assert_eq!(api.requests().len(), 1, "one request: a 400 is not retried");
    let imported: Vec<_> = api.imported().into_keys().collect();
    assert_eq!(
        imported,
        [
            "0190a6d4-1f2e-7c3b-9a4d-000000000000",
            "0190a6d4-1f2e-7c3b-9a4d-000000000003"
        ]
    );
}

#[tokio::test]
async fn a_401_is_permanent_and_names_no_secret() {
    let api = MixpanelApi::start(Account::Token("another-token".into())).await;
    let events = [outgoing(&envelope(0)), outgoing(&envelope(1))];
    let delivery = connector(&api, token(), Duration::from_secs(5))
        .deliver(&events)
        .await;
    let Delivery::Failed(failure) = delivery else {
        panic!("{delivery:?}")
    };
    assert_eq!(failure.class, FailureClass::Permanent);
    assert_eq!(failure.status, Some(401));
    assert_eq!(failure.message, "Mixpanel: HTTP 401: Invalid credentials");

    // A server echoing the credentials back: they are redacted.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{TOKEN}:"));
    api.script([Scripted::Raw(
        401,
        format!(r#"{{"code":401,"error":"Invalid credentials: Basic {basic} (token {TOKEN})","status":"Unauthorized"}}"#),
        vec![],
    )]);
    let Delivery::Failed(failure) = connector(&api, token(), Duration::from_secs(5))
        .deliver(&events)
        .await
    else {
        panic!()
    };
    assert!(!failure.message.contains(TOKEN), "{}", failure.message);
    assert!(!failure.message.contains(&basic), "{}", failure.message);
    assert!(
        failure.message.contains("[redacted]"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_413_halves_the_request_until_it_fits() {
    let api = MixpanelApi::start(Account::Token(TOKEN.into())).await;
    api.set_max_request_bytes(2_500);
    let mut events: Vec<_> = (0..8).map(|n| outgoing(&envelope(n))).collect();
    let mut alone_too_big = envelope(8);
    alone_too_big["data"]["blob"] = json!("z".repeat(3_000));
    events.push(outgoing(&alone_too_big));
    let delivery = connector(&api, token(), Duration::from_secs(5))
        .deliver(&events)
        .await;
    let Delivery::Partial(failures) = delivery else {
        panic!("{delivery:?}")
    };
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, 8);
    assert_eq!(failures[0].1.class, FailureClass::Permanent);
    assert_eq!(failures[0].1.status, Some(413));
    assert!(
        failures[0]
            .1
            .message
            .contains("request exceeds max limit of 2500 bytes"),
        "Mixpanel's documented message: {}",
        failures[0].1.message
    );
    let requests = api.requests();
    assert_eq!(requests[0].status, 413);
    assert_eq!(requests[0].events.len(), 9);
    assert!(
        requests
            .iter()
            .filter(|r| r.status == 200)
            .all(|r| r.uncompressed_bytes <= 2_500)
    );
    assert_eq!(api.imported().len(), 8);
}

#[tokio::test]
async fn a_429_or_5xx_is_retryable_and_spares_the_rest_of_the_batch() {
    let api = MixpanelApi::start(Account::Token(TOKEN.into())).await;
    let mixpanel = connector(&api, token(), Duration::from_secs(5));
    let events: Vec<_> = (0..2_100).map(|n| outgoing(&envelope(n))).collect();

    api.script([Scripted::Status(429)]);
    let Delivery::Failed(failure) = mixpanel.deliver(&events).await else {
        panic!()
    };
    assert_eq!(failure.class, FailureClass::Retryable);
    assert_eq!(failure.status, Some(429));
    assert_eq!(
        failure.retry_after, None,
        "Mixpanel documents no Retry-After"
    );
    let documented = vendor_file("mixpanel/429-rate-limit.json");
    assert_eq!(
        failure.message,
        format!(
            "Mixpanel: HTTP 429: {}",
            documented["body"]["error"].as_str().unwrap()
        )
    );
    assert_eq!(
        api.requests().len(),
        1,
        "the second request of the batch is not sent"
    );

    api.script([Scripted::Status(503)]);
    let Delivery::Failed(failure) = mixpanel.deliver(&events[..5]).await else {
        panic!()
    };
    assert_eq!(failure.class, FailureClass::Retryable);
    assert_eq!(failure.status, Some(503));

    // After a first request imported, a 502 on the second: only the second is retried.
    api.script([Scripted::Slow(Duration::ZERO), Scripted::Status(502)]);
    let Delivery::Partial(failures) = mixpanel.deliver(&events).await else {
        panic!()
    };
    assert_eq!(failures.len(), 100);
    assert_eq!(failures[0].0, 2_000);
    assert!(
        failures
            .iter()
            .all(|(_, f)| f.class == FailureClass::Retryable)
    );
}

#[tokio::test]
async fn slow_answers_time_out_and_the_retry_is_deduplicated_by_insert_id() {
    let api = MixpanelApi::start(Account::Token(TOKEN.into())).await;
    let mixpanel = connector(&api, token(), Duration::from_millis(300));
    let events: Vec<_> = (0..4).map(|n| outgoing(&envelope(n))).collect();
    api.script([Scripted::Slow(Duration::from_millis(1_000))]);
    let Delivery::Failed(failure) = mixpanel.deliver(&events).await else {
        panic!()
    };
    assert_eq!(failure.class, FailureClass::Retryable);
    assert!(failure.message.contains("timed out"), "{}", failure.message);
    assert_eq!(mixpanel.deliver(&events).await, Delivery::Delivered);
    let requests = api.requests();
    assert_eq!(requests.len(), 2);
    let ids = |index: usize| -> Vec<Value> {
        requests[index]
            .events
            .iter()
            .map(|event| event["properties"]["$insert_id"].clone())
            .collect()
    };
    assert_eq!(ids(0), ids(1), "the same $insert_id on the retry");
    assert_eq!(api.import_count(), 8, "Mixpanel received both copies");
    assert_eq!(api.imported().len(), 4, "and kept one of each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_retries_429_dead_letters_only_the_failed_records_and_leaks_no_token() {
    let api = MixpanelApi::start(Account::Token(TOKEN.into())).await;
    api.script([Scripted::Status(429), Scripted::Status(500)]);
    let config = config_with(&format!(
        r#"
[destinations.mp]
kind = "mixpanel"
endpoint = "{}"
token_env = "TEST_MIXPANEL_TOKEN"
batch_size = 50
retry = {{ max_attempts = 5, base_delay_ms = 50, max_delay_ms = 200 }}
"#,
        api.url
    ));
    let rules =
        r#"[{"destination_name": "mp", "destination_arn": "local", "enabled_events": ["*"]}]"#;
    let server = Server::start_with_env(&config, rules, &[("TEST_MIXPANEL_TOKEN", TOKEN)]);
    let mut events: Vec<Value> = (0..5).map(envelope).collect();
    events[1]["timestamp"] = json!("1960-01-01T00:00:00Z");
    events[3]["user_id"] = json!("null");
    for event in &mut events {
        event.as_object_mut().unwrap().remove("received_at");
    }
    let answer = post_events(&server.url("/v1/batch"), batch(&events)).await;
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());

    let data = server.path("data");
    eventually(Duration::from_secs(15), "two events dead-lettered", || {
        dlq_messages(&data).len() == 2
    })
    .await;
    eventually(Duration::from_secs(5), "three imported", || {
        api.imported().len() == 3
    })
    .await;
    let messages = dlq_messages(&data);
    let dead: Vec<&str> = messages
        .iter()
        .map(|message| message["events"][0]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        dead,
        [
            "0190a6d4-1f2e-7c3b-9a4d-000000000001",
            "0190a6d4-1f2e-7c3b-9a4d-000000000003"
        ]
    );
    for message in &messages {
        assert_eq!(
            message["events"].as_array().unwrap().len(),
            1,
            "one event per message"
        );
        assert_eq!(message["error"]["class"], "permanent");
        assert_eq!(message["error"]["status"], 400);
        assert_eq!(message["attempts"], 3, "after the 429 and the 500");
    }
    assert!(
        messages[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'properties.time' is invalid"),
        "{}",
        messages[0]
    );
    let statuses: Vec<u16> = api.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [429, 500, 400],
        "retried, then the partial success"
    );
    let metrics = server.metrics().await;
    assert_eq!(
        metrics["tributary_destination_delivered_total{destination=\"mp\"}"],
        3.0
    );

    // Credentials refused, by a server echoing them: the DLQ, the log and the CLI stay clean.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{TOKEN}:"));
    api.script([Scripted::Raw(
        401,
        format!(r#"{{"code":401,"error":"Invalid credentials for {TOKEN} (Basic {basic})","status":"Unauthorized"}}"#),
        vec![],
    )]);
    let answer = post_events(&server.url("/v1/batch"), batch(&[envelope(9)])).await;
    assert_eq!(answer.status(), 200);
    eventually(Duration::from_secs(10), "the 401 dead-lettered", || {
        dlq_messages(&data).len() == 3
    })
    .await;
    let refused = &dlq_messages(&data)[2];
    assert_eq!(refused["error"]["status"], 401);
    assert_eq!(refused["attempts"], 1, "permanent");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[redacted]")
    );
    let listing = text(&server.cli(&["dlq", "list"]));
    for secret in [TOKEN, basic.as_str()] {
        assert!(
            !listing.contains(secret),
            "dlq list shows a secret: {listing}"
        );
        assert!(!server.log().contains(secret), "serve.log shows a secret");
        assert_eq!(
            files_containing(server.folder.path(), secret),
            Vec::<std::path::PathBuf>::new(),
            "a file holds a secret"
        );
    }
}
