//! Deletion and suppression against the real binary: `tributary privacy delete` (while `serve`
//! runs) and `POST /v1/privacy/delete` remove a user's events from the log, the DLQ, the SQLite
//! and PostgreSQL warehouses and the JSON Lines files, and record the request; `suppress` makes
//! the ingest drop and count the user's later events, `unsuppress` collects them again.

mod common;
mod contract;

use std::time::Duration;

use common::{Server, WRITE_KEY, batch, config_with, eventually, post, text};
use contract::postgres::{client, unique_table, url};
use serde_json::{Value, json};

const RULES: &str = r#"[
  {"destination_name": "datawarehouse", "destination_arn": "local", "enabled_events": ["*"]},
  {"destination_name": "archive", "destination_arn": "local", "enabled_events": ["*"]},
  {"destination_name": "warehouse_pg", "destination_arn": "local", "enabled_events": ["*"]},
  {"destination_name": "hooks", "destination_arn": "local", "enabled_events": ["*"]}
]"#;

/// Events of three people: `u-del` (by user id, as Tributary and Segment events), `a-del` (only
/// an anonymous id) and `u-keep`.
fn traffic(round: &str) -> Vec<Value> {
    vec![
        json!({"id": format!("{round}-del-1"), "name": "login", "data": {}, "user_id": "u-del", "anonymous_id": "a-other"}),
        json!({"type": "track", "messageId": format!("{round}-del-2"), "event": "Order Completed", "userId": "u-del"}),
        json!({"id": format!("{round}-anon-1"), "name": "page_view", "data": {}, "anonymous_id": "a-del"}),
        json!({"id": format!("{round}-keep-1"), "name": "login", "data": {}, "user_id": "u-keep"}),
        json!({"type": "identify", "messageId": format!("{round}-keep-2"), "userId": "u-keep", "traits": {"plan": "pro"}}),
    ]
}

fn ids_in_log(server: &Server) -> Vec<String> {
    server.sqlite_strings("data/log.db", "SELECT id FROM log ORDER BY offset")
}

fn ids_in_dlq(server: &Server) -> Vec<String> {
    let bodies = server.sqlite_strings("data/dlq.db", "SELECT body FROM messages");
    bodies
        .iter()
        .flat_map(|body| {
            let message: Value = serde_json::from_str(body).unwrap();
            message["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|event| event["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn jsonl_ids(server: &Server, file: &str) -> Vec<String> {
    server
        .jsonl(file)
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn postgres_ids(client: &tokio_postgres::Client, table: &str) -> Vec<String> {
    match client
        .query(&format!("SELECT id FROM \"{table}\" ORDER BY id"), &[])
        .await
    {
        Ok(rows) => rows.iter().map(|row| row.get(0)).collect(),
        Err(_) => Vec::new(),
    }
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

fn with_prefix(ids: &[String], prefix: &str) -> Vec<String> {
    sorted(
        ids.iter()
            .filter(|id| id.starts_with(prefix))
            .cloned()
            .collect(),
    )
}

async fn metric(server: &Server, series: &str) -> f64 {
    server.metrics().await.get(series).copied().unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_removes_a_users_events_everywhere_and_suppression_drops_later_ones() {
    let Some(postgres_url) = url("deletion_removes_a_users_events_everywhere") else {
        return;
    };
    let table = unique_table("privacy");
    // `hooks` points at a closed port and gives up at once: every event also sits in the DLQ.
    let config = config_with(&format!(
        r#"
[destinations.warehouse_pg]
kind = "postgres"
url_env = "PRIVACY_TEST_PG_URL"
table = "{table}"

[destinations.hooks]
kind = "webhook"
url = "http://127.0.0.1:9/events"
timeout_ms = 500
retry = {{ max_attempts = 1 }}
"#
    ));
    let server = Server::start_with_env(&config, RULES, &[("PRIVACY_TEST_PG_URL", &postgres_url)]);
    let pg = client(&postgres_url).await;

    let response = post(&server.url("/v1/batch"), batch(&traffic("r1"))).await;
    assert_eq!(response.status(), 200);
    eventually(Duration::from_secs(30), "5 events in every store", || {
        server.warehouse_ids().len() == 5
            && server.jsonl("data/archive.jsonl").len() == 5
            && ids_in_dlq(&server).len() == 5
    })
    .await;
    let mut in_postgres = Vec::new();
    for _ in 0..400 {
        in_postgres = postgres_ids(&pg, &table).await;
        if in_postgres.len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(in_postgres.len(), 5, "{}", server.log());
    assert_eq!(ids_in_log(&server).len(), 5);

    // The CLI, while serve runs.
    let output = server.cli(&[
        "privacy",
        "delete",
        "--user",
        "u-del",
        "--anonymous-id",
        "a-del",
        "--reason",
        "ticket 81",
    ]);
    let printed = text(&output);
    assert!(output.status.success(), "{printed}");
    assert!(
        printed.contains("log           3 events removed"),
        "{printed}"
    );
    assert!(
        printed.contains("datawarehouse 3 events removed"),
        "{printed}"
    );
    assert!(
        printed.contains("warehouse_pg  3 events removed"),
        "{printed}"
    );
    assert!(
        printed.contains("archive       3 events removed"),
        "{printed}"
    );
    assert!(
        printed.contains("hooks         not deleted here"),
        "{printed}"
    );
    assert!(
        printed.contains("dlq           3 events removed"),
        "{printed}"
    );

    let kept = ["r1-keep-1".to_owned(), "r1-keep-2".to_owned()];
    assert_eq!(sorted(ids_in_log(&server)), kept);
    assert_eq!(sorted(server.warehouse_ids()), kept);
    assert_eq!(sorted(jsonl_ids(&server, "data/archive.jsonl")), kept);
    assert_eq!(sorted(ids_in_dlq(&server)), kept);
    assert_eq!(postgres_ids(&pg, &table).await, kept);

    // The audit trail.
    let trail = std::fs::read_to_string(server.path("data/privacy-requests.jsonl")).unwrap();
    let record: Value = serde_json::from_str(trail.lines().last().unwrap()).unwrap();
    assert_eq!(record["action"], "delete");
    assert_eq!(record["via"], "cli");
    assert_eq!(record["reason"], "ticket 81");
    assert_eq!(
        record["subjects"],
        json!([{"user_id": "u-del"}, {"anonymous_id": "a-del"}])
    );
    assert_eq!(record["erasure"]["log"], 3);
    assert_eq!(record["erasure"]["dlq_events"], 3);
    assert_eq!(
        record["erasure"]["destinations"]["warehouse_pg"],
        json!({"status": "erased", "events": 3})
    );
    assert_eq!(
        record["erasure"]["destinations"]["hooks"]["status"],
        "unsupported"
    );
    let listed = text(&server.cli(&["privacy", "requests"]));
    assert!(
        listed.contains("delete     cli  user_id \"u-del\", anonymous_id \"a-del\""),
        "{listed}"
    );

    // Deletion is not suppression: the user's new events are collected.
    let response = post(&server.url("/v1/batch"), batch(&traffic("r2"))).await;
    assert_eq!(response.status(), 200);
    eventually(Duration::from_secs(20), "round 2 in the warehouse", || {
        with_prefix(&server.warehouse_ids(), "r2-").len() == 5
    })
    .await;

    // The admin endpoint: delete and suppress in one request.
    let answer: Value = {
        let response = reqwest::Client::new()
            .post(server.url("/v1/privacy/delete"))
            .json_body(&json!({"user_id": "u-del", "suppress": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
    };
    assert_eq!(answer["via"], "http");
    assert_eq!(answer["erasure"]["log"], 2, "{answer}");
    assert_eq!(
        answer["erasure"]["destinations"]["datawarehouse"]["events"], 2,
        "{answer}"
    );
    assert_eq!(
        with_prefix(&server.warehouse_ids(), "r2-"),
        ["r2-anon-1", "r2-keep-1", "r2-keep-2"]
    );

    // Suppressed: later events are answered as accepted, counted, and stored nowhere.
    let suppressed_before = metric(&server, "tributary_events_suppressed_total").await;
    let response = post(&server.url("/v1/batch"), batch(&traffic("r3"))).await;
    assert_eq!(response.status(), 200);
    let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(
        answer["accepted"], 5,
        "suppression is not revealed to the client"
    );
    assert_eq!(
        metric(&server, "tributary_events_suppressed_total").await - suppressed_before,
        2.0
    );
    eventually(
        Duration::from_secs(20),
        "round 3's other events delivered",
        || with_prefix(&server.warehouse_ids(), "r3-").len() == 3,
    )
    .await;
    assert_eq!(
        with_prefix(&server.warehouse_ids(), "r3-"),
        ["r3-anon-1", "r3-keep-1", "r3-keep-2"]
    );
    assert!(with_prefix(&ids_in_log(&server), "r3-del").is_empty());

    // The CLI suppresses too, and serve notices the file within a second.
    let output = server.cli(&["privacy", "suppress", "--anonymous-id", "a-del"]);
    assert!(output.status.success(), "{}", text(&output));
    let listed = text(&server.cli(&["privacy", "list"]));
    assert!(listed.contains("user_id \"u-del\""), "{listed}");
    assert!(listed.contains("anonymous_id \"a-del\""), "{listed}");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let response = post(&server.url("/v1/batch"), batch(&traffic("r4"))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        metric(&server, "tributary_events_suppressed_total").await - suppressed_before,
        5.0
    );

    // Unsuppressed through the admin endpoint: collected again at once.
    let response = reqwest::Client::new()
        .post(server.url("/v1/privacy/unsuppress"))
        .json_body(&json!({"user_ids": ["u-del"], "anonymous_ids": ["a-del"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = post(&server.url("/v1/batch"), batch(&traffic("r5"))).await;
    assert_eq!(response.status(), 200);
    eventually(Duration::from_secs(20), "round 5 delivered whole", || {
        with_prefix(&server.warehouse_ids(), "r5-").len() == 5
    })
    .await;
    assert_eq!(
        metric(&server, "tributary_events_suppressed_total").await - suppressed_before,
        5.0
    );
    let list: Value = {
        let response = reqwest::get(server.url("/v1/privacy/suppressions"))
            .await
            .unwrap();
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
    };
    assert_eq!(list["suppressed"], json!([]));
    assert_eq!(list["deleted"].as_array().unwrap().len(), 3, "{list}");
    let history: Value = {
        let response = reqwest::get(server.url("/v1/privacy/requests"))
            .await
            .unwrap();
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
    };
    let actions: Vec<&str> = history["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["delete", "delete", "suppress", "unsuppress"]);

    // Bad requests say what is wrong.
    let response = reqwest::Client::new()
        .post(server.url("/v1/privacy/delete"))
        .json_body(&json!({"email": "x@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = reqwest::Client::new()
        .post(server.url("/v1/privacy/suppress"))
        .json_body(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let output = server.cli(&["privacy", "delete"]);
    assert!(!output.status.success());
    assert!(text(&output).contains("--user"), "{}", text(&output));
    let _ = WRITE_KEY;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_redriven_after_a_deletion_does_not_bring_the_events_back() {
    let config = config_with(
        r#"
[destinations.hooks]
kind = "webhook"
url = "http://127.0.0.1:9/events"
timeout_ms = 500
retry = { max_attempts = 1 }
"#,
    );
    let rules =
        r#"[{"destination_name": "hooks", "destination_arn": "local", "enabled_events": ["*"]}]"#;
    let server = Server::start(&config, rules);
    let response = post(&server.url("/v1/batch"), batch(&traffic("b1"))).await;
    assert_eq!(response.status(), 200);
    eventually(Duration::from_secs(20), "5 events in the DLQ", || {
        ids_in_dlq(&server).len() == 5
    })
    .await;
    let backup = server.path("backup.jsonl");
    let output = server.cli(&[
        "dlq",
        "backup",
        "--out",
        backup.to_str().unwrap(),
        "--purge",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(ids_in_dlq(&server).is_empty());

    let output = server.cli(&[
        "privacy",
        "delete",
        "--user",
        "u-del",
        "--anonymous-id",
        "a-del",
    ]);
    assert!(output.status.success(), "{}", text(&output));

    // The webhook still fails, so what is redriven comes back to the DLQ: the deleted users'
    // events must not.
    let output = server.cli(&["dlq", "redrive", "--from", backup.to_str().unwrap()]);
    let printed = text(&output);
    assert!(
        printed.contains("3 events of deleted or suppressed users left out"),
        "{printed}"
    );
    assert_eq!(sorted(ids_in_dlq(&server)), ["b1-keep-1", "b1-keep-2"]);
}

/// `reqwest` here is built without its `json` feature.
trait JsonBody {
    fn json_body(self, body: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(body.to_string())
    }
}
