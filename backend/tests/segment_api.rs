//! Segment's HTTP Tracking API against the real binary: hand-written Segment Spec bodies for
//! every call type, on their own endpoints and mixed with Tributary events in one batch, land in
//! the warehouse as docs/SEGMENT.md's table maps them.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use common::{Server, WRITE_KEY, config_with, eventually};
use serde_json::{Value, json};

/// Every event to the warehouse and the archive.
const RULES: &str = r#"[
  {"destination_name": "datawarehouse", "destination_arn": "local", "enabled_events": ["*"]},
  {"destination_name": "archive", "destination_arn": "local", "enabled_events": ["*"]}
]"#;

fn basic_auth(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

async fn post_segment(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(server.url(path))
        .header("authorization", basic_auth(WRITE_KEY))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap(),
    )
}

/// A warehouse row: (name, user_id, anonymous_id, source, data, context, envelope).
type Row = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Value,
    Value,
    Value,
);

/// The warehouse's rows by id.
fn warehouse_rows(server: &Server) -> HashMap<String, Row> {
    let path = server.path("data/warehouse.db");
    if !path.exists() {
        return HashMap::new();
    }
    let connection = rusqlite::Connection::open(path).unwrap();
    connection.busy_timeout(Duration::from_secs(5)).unwrap();
    let Ok(mut statement) = connection.prepare(
        "SELECT id, name, user_id, anonymous_id, source, data, context, envelope FROM events",
    ) else {
        return HashMap::new();
    };
    statement
        .query_map([], |row| {
            let json = |index: usize| -> rusqlite::Result<Value> {
                Ok(serde_json::from_str(&row.get::<_, String>(index)?).unwrap())
            };
            Ok((
                row.get::<_, String>(0)?,
                (
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    json(5)?,
                    json(6)?,
                    json(7)?,
                ),
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_segment_call_lands_in_the_warehouse_mapped() {
    let server = Server::start(&config_with(""), RULES);
    let context =
        json!({"library": {"name": "analytics-python", "version": "2.3.0"}, "locale": "en-GB"});
    let calls = [
        (
            "/v1/track",
            json!({"messageId": "seg-track", "userId": "u-1", "event": "Order Completed",
                   "properties": {"order_id": "o-9", "total": 30.5}, "context": context,
                   "timestamp": "2026-11-27T10:00:00Z", "integrations": {"All": true}}),
        ),
        (
            "/v1/identify",
            json!({"messageId": "seg-identify", "userId": "u-1", "anonymousId": "a-1",
                   "traits": {"email": "u1@example.com", "plan": "pro"}, "context": context}),
        ),
        (
            "/v1/page",
            json!({"messageId": "seg-page", "anonymousId": "a-1", "name": "Pricing",
                   "category": "Docs", "properties": {"url": "https://example.com/pricing"},
                   "channel": "browser"}),
        ),
        (
            "/v1/screen",
            json!({"messageId": "seg-screen", "userId": "u-1", "name": "Settings",
                   "properties": {"from": "menu"}, "channel": "mobile",
                   "context": {"os": {"name": "Android", "version": "15"}}}),
        ),
        (
            "/v1/group",
            json!({"messageId": "seg-group", "userId": "u-1", "groupId": "acme",
                   "traits": {"name": "Acme", "employees": 40}}),
        ),
        (
            "/v1/alias",
            json!({"messageId": "seg-alias", "userId": "u-1", "previousId": "a-1"}),
        ),
    ];
    for (path, body) in &calls {
        let (status, answer) = post_segment(&server, path, body).await;
        assert_eq!(status, 200, "{path}: {answer}");
        assert_eq!(answer["accepted"], 1, "{path}: {answer}");
        assert_eq!(answer["rejected"], json!([]), "{path}: {answer}");
    }

    // One batch mixing both formats, with Segment's batch-level sentAt and context.
    let (status, answer) = post_segment(
        &server,
        "/v1/batch",
        &json!({
            "batch": [
                {"type": "track", "messageId": "seg-batch-track", "anonymousId": "a-2",
                 "event": "Signed Up", "properties": {"plan": "free"}},
                {"id": "trib-1", "name": "login", "data": {"method": "sso"}, "user_id": "u-2"},
                {"type": "refund", "messageId": "seg-bad"},
                {"type": "identify", "messageId": "seg-batch-identify", "userId": "u-2",
                 "traits": {"email": "u2@example.com"}, "context": {"locale": "fr-FR"}}
            ],
            "sentAt": "2026-11-27T10:00:10Z",
            "context": {"locale": "de-DE", "app": {"name": "shop"}}
        }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 3, "{answer}");
    assert_eq!(answer["rejected"][0]["index"], 2, "{answer}");
    assert!(
        answer["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .starts_with("type: \"refund\" is not a Segment call"),
        "{answer}"
    );

    let expected = 9;
    eventually(Duration::from_secs(20), "9 events in the warehouse", || {
        warehouse_rows(&server).len() == expected
    })
    .await;
    let rows = warehouse_rows(&server);

    let (name, user, anonymous, source, data, context, envelope) = &rows["seg-track"];
    assert_eq!(name, "Order Completed");
    assert_eq!(user.as_deref(), Some("u-1"));
    assert_eq!(anonymous, &None);
    assert_eq!(source.as_deref(), Some("server"));
    assert_eq!(data, &json!({"order_id": "o-9", "total": 30.5}));
    assert_eq!(context["locale"], "en-GB");
    assert_eq!(context["integrations"], json!({"All": true}));
    assert_eq!(
        context["ip"], "127.0.0.0",
        "the socket's address, anonymized by default"
    );
    assert_eq!(envelope["timestamp"], "2026-11-27T10:00:00Z");
    assert!(envelope["received_at"].is_string());

    let (name, user, anonymous, _, data, _, _) = &rows["seg-identify"];
    assert_eq!(name, "$identify");
    assert_eq!(
        (user.as_deref(), anonymous.as_deref()),
        (Some("u-1"), Some("a-1"))
    );
    assert_eq!(data, &json!({"email": "u1@example.com", "plan": "pro"}));

    let (name, _, anonymous, source, data, _, _) = &rows["seg-page"];
    assert_eq!(name, "$page");
    assert_eq!(anonymous.as_deref(), Some("a-1"));
    assert_eq!(source.as_deref(), Some("web"));
    assert_eq!(
        data,
        &json!({"url": "https://example.com/pricing", "name": "Pricing", "category": "Docs"})
    );

    let (name, _, _, source, data, context, _) = &rows["seg-screen"];
    assert_eq!(name, "$screen");
    assert_eq!(source.as_deref(), Some("android"));
    assert_eq!(data, &json!({"from": "menu", "name": "Settings"}));
    assert_eq!(context["os"]["name"], "Android");

    let (name, _, _, _, data, _, _) = &rows["seg-group"];
    assert_eq!(name, "$group");
    assert_eq!(
        data,
        &json!({"group_id": "acme", "traits": {"name": "Acme", "employees": 40}})
    );

    let (name, user, _, _, data, _, _) = &rows["seg-alias"];
    assert_eq!(name, "$alias");
    assert_eq!(user.as_deref(), Some("u-1"));
    assert_eq!(data, &json!({"previous_id": "a-1"}));

    let (name, _, anonymous, _, data, context, envelope) = &rows["seg-batch-track"];
    assert_eq!(name, "Signed Up");
    assert_eq!(anonymous.as_deref(), Some("a-2"));
    assert_eq!(data, &json!({"plan": "free"}));
    assert_eq!(context["locale"], "de-DE", "the batch's context");
    assert_eq!(context["app"]["name"], "shop");
    assert_eq!(envelope["sent_at"], "2026-11-27T10:00:10Z");

    let (_, _, _, _, _, context, _) = &rows["seg-batch-identify"];
    assert_eq!(context["locale"], "fr-FR", "an event's own context wins");
    assert_eq!(context["app"]["name"], "shop");

    let (name, user, _, _, data, _, _) = &rows["trib-1"];
    assert_eq!(name, "login");
    assert_eq!(user.as_deref(), Some("u-2"));
    assert_eq!(data, &json!({"method": "sso"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_js_short_paths_beacons_and_auth() {
    let server = Server::start(&config_with(""), RULES);
    let client = reqwest::Client::new();

    // analytics.js: text/plain, the key in the body, no Authorization header.
    let response = client
        .post(server.url("/v1/t"))
        .header("content-type", "text/plain")
        .body(
            json!({"type": "track", "event": "Clicked", "anonymousId": "a-9",
                   "messageId": "ajs-1", "writeKey": WRITE_KEY})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = client
        .post(server.url("/v1/b"))
        .header("content-type", "text/plain")
        .body(
            json!({"batch": [{"type": "page", "anonymousId": "a-9", "messageId": "ajs-2", "name": "Home"}],
                   "writeKey": WRITE_KEY, "sentAt": "2026-11-27T10:00:00Z"})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // A wrong key as Basic user, and no key at all, are 401.
    let (status, answer) = {
        let response = client
            .post(server.url("/v1/track"))
            .header("authorization", basic_auth("not-the-key"))
            .body(json!({"event": "x", "userId": "u"}).to_string())
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            serde_json::from_slice::<Value>(&response.bytes().await.unwrap()).unwrap(),
        )
    };
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let response = client
        .post(server.url("/v1/identify"))
        .body(json!({"userId": "u", "traits": {}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // A call whose type contradicts its endpoint is rejected by index, not stored.
    let (status, answer) = post_segment(
        &server,
        "/v1/track",
        &json!({"type": "identify", "userId": "u", "messageId": "ajs-wrong"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["accepted"], 0);
    assert!(
        answer["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("/v1/track endpoint"),
        "{answer}"
    );
    // Malformed JSON is a 400 with its position.
    let (status, answer) = {
        let response = client
            .post(server.url("/v1/page"))
            .header("authorization", basic_auth(WRITE_KEY))
            .body("{\"name\": ")
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            serde_json::from_slice::<Value>(&response.bytes().await.unwrap()).unwrap(),
        )
    };
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["line"].is_number());

    eventually(
        Duration::from_secs(20),
        "both analytics.js events stored",
        || {
            let rows = warehouse_rows(&server);
            rows.contains_key("ajs-1") && rows.contains_key("ajs-2")
        },
    )
    .await;
    let rows = warehouse_rows(&server);
    assert!(!rows.contains_key("ajs-wrong"));
    assert_eq!(rows["ajs-2"].0, "$page");
    assert!(
        !rows["ajs-1"].6.to_string().contains(WRITE_KEY),
        "the write key is not stored"
    );
}
