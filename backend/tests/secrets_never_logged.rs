//! No secret reaches a file: `serve` runs at `RUST_LOG=debug` with a write key, an admin token,
//! a webhook secret, a Mixpanel project token, a Mixpanel service account, a HubSpot token and a
//! PostgreSQL password (all from the environment), every destination fails (a `401` whose body
//! echoes each request's headers and body, a PostgreSQL server that refuses connections), the
//! failures are dead-lettered and backed up, and then every file of the run (the log, the DLQ,
//! the backup, the warehouse, the log output) is searched for each secret, raw and base64.

mod common;

use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine;
use common::{Server, eventually, text};
use serde_json::json;

const WRITE_KEY: &str = "wk-secret-7d1f0c2e9a";
const ADMIN_TOKEN: &str = "admin-secret-b45e11c0";
const WEBHOOK_SECRET: &str = "hook-secret-5c0ffee1";
const MIXPANEL_TOKEN: &str = "mp-token-secret-91ab3";
const MIXPANEL_SECRET: &str = "mp-sa-secret-0f7e2d";
const HUBSPOT_TOKEN: &str = "pat-na1-secret-7731aa";
const POSTGRES_PASSWORD: &str = "pg-password-secret-4242";

/// Answers every request `401` with its headers and body in the response body, as a careless
/// API might.
async fn echo_401(headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let mut echoed: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {}\n", value.to_str().unwrap_or("?")))
        .collect();
    echoed.push_str(&String::from_utf8_lossy(&body));
    (StatusCode::UNAUTHORIZED, echoed)
}

/// Every file under `folder`, recursively.
fn files(folder: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_line_or_a_dlq_record() {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_url = format!("http://{}", echo.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(echo, Router::new().fallback(echo_401))
            .await
            .unwrap();
    });
    // A port nothing listens on: the PostgreSQL connector's connection is refused.
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused_port = refused.local_addr().unwrap().port();
    drop(refused);

    let fast_retry = "retry = { max_attempts = 2, base_delay_ms = 10, max_delay_ms = 20 }";
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[storage]
data_dir = "data"

[routing]
rules = "rules.json"

[destinations.hooks]
kind = "webhook"
url = "{echo_url}/events"
secret_env = "HOOKS_SECRET"
{fast_retry}

[destinations.mixpanel]
kind = "mixpanel"
endpoint = "{echo_url}"
token_env = "MIXPANEL_TOKEN"
{fast_retry}

[destinations.mixpanel_sa]
kind = "mixpanel"
endpoint = "{echo_url}"
username_env = "MIXPANEL_USERNAME"
secret_env = "MIXPANEL_SECRET"
project_id = "12345"
{fast_retry}

[destinations.hubspotcrm]
kind = "hubspot"
endpoint = "{echo_url}"
token_env = "HUBSPOT_TOKEN"
{fast_retry}

[destinations.warehouse_pg]
kind = "postgres"
url_env = "WAREHOUSE_URL"
timeout_ms = 2000
{fast_retry}
"#
    );
    let rules = json!(["hooks", "mixpanel", "mixpanel_sa", "hubspotcrm", "warehouse_pg"]
        .iter()
        .map(|name| json!({"destination_name": name, "destination_arn": "local", "enabled_events": ["*"]}))
        .collect::<Vec<_>>())
    .to_string();
    let postgres_url =
        format!("postgres://tributary:{POSTGRES_PASSWORD}@127.0.0.1:{refused_port}/events");
    let mut server = Server::start_with_env(
        &config,
        &rules,
        &[
            ("RUST_LOG", "debug"),
            ("TRIBUTARY_WRITE_KEYS", WRITE_KEY),
            ("TRIBUTARY_ADMIN_TOKEN", ADMIN_TOKEN),
            ("HOOKS_SECRET", WEBHOOK_SECRET),
            ("MIXPANEL_TOKEN", MIXPANEL_TOKEN),
            ("MIXPANEL_USERNAME", "sa-user"),
            ("MIXPANEL_SECRET", MIXPANEL_SECRET),
            ("HUBSPOT_TOKEN", HUBSPOT_TOKEN),
            ("WAREHOUSE_URL", &postgres_url),
        ],
    );

    let client = reqwest::Client::new();
    let events: Vec<_> = (0..5)
        .map(|n| json!({"id": format!("secret-test-{n}"), "name": "login", "user_id": format!("user-{n}"), "data": {"n": n}}))
        .collect();
    let response = client
        .post(server.url("/v1/batch"))
        .bearer_auth(WRITE_KEY)
        .body(json!({"batch": events}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A beacon carries the key in its body: it must not be stored with the event.
    let beacon = json!({"write_key": WRITE_KEY, "batch": [{"id": "secret-test-beacon", "name": "login", "data": {}}]});
    let response = client
        .post(server.url("/v1/batch"))
        .header("content-type", "text/plain")
        .body(beacon.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Wrong credentials are refused without being repeated.
    let response = client
        .post(server.url("/v1/batch"))
        .bearer_auth(format!("{WRITE_KEY}-wrong"))
        .body(json!({"batch": []}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(!response.text().await.unwrap().contains(WRITE_KEY));

    // Every destination dead-letters both batches' events.
    let destinations = [
        "hooks",
        "mixpanel",
        "mixpanel_sa",
        "hubspotcrm",
        "warehouse_pg",
    ];
    // `dlq list`: one line per message, `id destination events …`; 6 events per destination.
    let dead_lettered = |server: &Server| {
        let listing = text(&server.cli(&["dlq", "list", "--config", "tributary.toml"]));
        destinations
            .iter()
            .filter(|name| {
                let events: usize = listing
                    .lines()
                    .filter_map(|line| {
                        let mut columns = line.split_whitespace().skip(1);
                        (columns.next()? == **name)
                            .then(|| columns.next()?.parse::<usize>().ok())?
                    })
                    .sum();
                events == 6
            })
            .count()
    };
    eventually(
        Duration::from_secs(60),
        "every destination dead-lettered",
        || dead_lettered(&server) == destinations.len(),
    )
    .await;
    let backup = server.cli(&[
        "dlq",
        "backup",
        "--out",
        "backup.jsonl",
        "--config",
        "tributary.toml",
    ]);
    assert!(backup.status.success(), "{}", text(&backup));
    let listing = text(&server.cli(&["dlq", "list", "--config", "tributary.toml"]));
    server.stop();

    let secrets = [
        ("write key", WRITE_KEY.to_owned()),
        ("admin token", ADMIN_TOKEN.to_owned()),
        ("webhook secret", WEBHOOK_SECRET.to_owned()),
        ("Mixpanel token", MIXPANEL_TOKEN.to_owned()),
        (
            "Mixpanel service-account secret",
            MIXPANEL_SECRET.to_owned(),
        ),
        ("HubSpot token", HUBSPOT_TOKEN.to_owned()),
        ("PostgreSQL password", POSTGRES_PASSWORD.to_owned()),
    ];
    let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
    for (label, secret) in &secrets {
        needles.push(((*label).to_owned(), secret.as_bytes().to_vec()));
        let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
        needles.push((format!("{label} (base64)"), encoded.into_bytes()));
    }
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("sa-user:{MIXPANEL_SECRET}"));
    needles.push(("Mixpanel Basic credentials".into(), basic.into_bytes()));
    needles.push((
        "Mixpanel token as Basic user".into(),
        base64::engine::general_purpose::STANDARD
            .encode(format!("{MIXPANEL_TOKEN}:"))
            .into_bytes(),
    ));

    let files = files(server.folder.path());
    let log = server.log();
    assert!(
        log.lines().count() > 10 && log.contains("DEBUG"),
        "the run logged at debug: {log}"
    );
    for name in ["serve.log", "backup.jsonl", "data/dlq.db", "data/log.db"] {
        assert!(
            files.iter().any(|path| path.ends_with(name)),
            "{name} was written: {files:?}"
        );
    }
    let mut searched_bytes = 0;
    for path in &files {
        if path.ends_with("tributary.toml") || path.ends_with("rules.json") {
            continue;
        }
        let bytes = std::fs::read(path).unwrap();
        searched_bytes += bytes.len();
        for (label, needle) in &needles {
            assert!(
                !contains(&bytes, needle),
                "the {label} is in {}",
                path.display()
            );
        }
    }
    assert!(!listing.contains(POSTGRES_PASSWORD) && !listing.contains(MIXPANEL_TOKEN));
    println!(
        "secrets: {} secrets ({} forms) searched in {} files ({searched_bytes} bytes, log at debug: {} lines) after {} destinations dead-lettered: 0 found",
        secrets.len(),
        needles.len(),
        files.len() - 2,
        log.lines().count(),
        destinations.len()
    );
}
