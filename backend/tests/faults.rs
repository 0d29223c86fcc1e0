//! Faults of the local pipeline, each reporting events sent / accepted / delivered /
//! dead-lettered / lost (one `fault:` line each, docs/RELIABILITY.md):
//! - a destination down (`503`) for a stretch under load, then back: every accepted event is
//!   delivered, none dead-lettered;
//! - a log file truncated, or overwritten in the middle, while `serve` is stopped with
//!   undelivered records: the restart reports the damage and delivers every record it kept.
//!
//! `kill -9` under load is `crash_recovery.rs`; the full log (`503`, then recovery) is
//! `http_api.rs` and `log::tests`.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use common::{Server, WRITE_KEY, batch, eventually, text};
use serde_json::{Value, json};

/// A webhook receiver that answers `503` while `down`, else `200` and records the ids.
#[derive(Default)]
struct Receiver {
    down: AtomicBool,
    delivered: Mutex<Vec<String>>,
    refused: Mutex<usize>,
}

async fn receive(State(receiver): State<Arc<Receiver>>, body: Bytes) -> StatusCode {
    if receiver.down.load(Ordering::SeqCst) {
        *receiver.refused.lock().unwrap() += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let events: Vec<Value> = serde_json::from_slice(&body).unwrap();
    receiver.delivered.lock().unwrap().extend(
        events
            .iter()
            .map(|event| event["id"].as_str().unwrap().to_owned()),
    );
    StatusCode::OK
}

impl Receiver {
    async fn start() -> (Arc<Self>, String) {
        let receiver = Arc::new(Self::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/events", post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    fn delivered(&self) -> HashSet<String> {
        self.delivered.lock().unwrap().iter().cloned().collect()
    }
}

/// Only the webhook, retried quickly and long enough to outlast the outages here.
fn webhook_config(url: &str) -> (String, String) {
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
write_keys = ["{WRITE_KEY}"]

[storage]
data_dir = "data"

[routing]
rules = "rules.json"

[destinations.hooks]
kind = "webhook"
url = "{url}"
batch_size = 50
retry = {{ max_attempts = 1000, base_delay_ms = 20, max_delay_ms = 250 }}
"#
    );
    let rules =
        json!([{"destination_name": "hooks", "destination_arn": "local", "enabled_events": ["*"]}])
            .to_string();
    (config, rules)
}

/// Events in the DLQ, from `dlq list`.
fn dead_lettered(server: &Server) -> usize {
    let listing = text(&server.cli(&["dlq", "list"]));
    listing
        .lines()
        .filter_map(|line| {
            let mut columns = line.split_whitespace().skip(1);
            (columns.next()? == "hooks").then(|| columns.next()?.parse::<usize>().ok())?
        })
        .sum()
}

/// Sends `requests` batches of `per_request` events; returns (sent, accepted ids).
async fn send(
    server: &Server,
    prefix: &str,
    requests: usize,
    per_request: usize,
) -> (usize, Vec<String>) {
    let client = reqwest::Client::new();
    let mut sent = 0;
    let mut accepted = Vec::new();
    for request in 0..requests {
        let ids: Vec<String> = (0..per_request)
            .map(|n| format!("{prefix}-{request}-{n}"))
            .collect();
        let events: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "name": "login", "anonymous_id": format!("device-{}", request % 7), "data": {"pad": "p".repeat(200)}}))
            .collect();
        sent += ids.len();
        let response = client
            .post(server.url("/v1/batch"))
            .bearer_auth(WRITE_KEY)
            .body(batch(&events))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            accepted.extend(ids);
        }
    }
    (sent, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_down_for_a_stretch_loses_nothing() {
    let (receiver, url) = Receiver::start().await;
    let (config, rules) = webhook_config(&url);
    let server = Server::start(&config, &rules);
    receiver.down.store(true, Ordering::SeqCst);
    let outage = tokio::time::Instant::now();
    let (sent, accepted) = send(&server, "outage", 40, 25).await;
    // Keep it down for 3 s in all, so every batch is retried several times.
    tokio::time::sleep_until(outage + Duration::from_secs(3)).await;
    let refused = *receiver.refused.lock().unwrap();
    receiver.down.store(false, Ordering::SeqCst);
    let (sent_after, accepted_after) = send(&server, "after", 8, 25).await;
    let accepted: HashSet<String> = accepted.into_iter().chain(accepted_after).collect();
    eventually(
        Duration::from_secs(60),
        "every accepted event delivered after the outage",
        || accepted.is_subset(&receiver.delivered()),
    )
    .await;
    let delivered = receiver.delivered();
    let lost = accepted.difference(&delivered).count();
    let dead = dead_lettered(&server);
    println!(
        "fault: destination down 3 s under load: sent {}, accepted {}, delivered {}, dead-lettered {dead}, lost {lost} ({refused} requests refused with 503 during the outage, {} deliveries in all)",
        sent + sent_after,
        accepted.len(),
        delivered.len(),
        receiver.delivered.lock().unwrap().len()
    );
    assert!(refused > 0, "the outage was felt");
    assert_eq!(lost, 0);
    assert_eq!(
        dead, 0,
        "nothing dead-lettered: retries outlasted the outage"
    );
    assert_eq!(
        delivered.len(),
        accepted.len(),
        "nothing delivered that was not accepted"
    );
}

/// Runs serve with the destination down, stops it with every record undelivered, damages
/// log.db with `damage`, restarts with the destination up, and checks that exactly the kept
/// records are delivered; prints the report line (the issue's counts) like the tests do.
#[allow(clippy::print_stdout)]
async fn damaged_log_run(label: &str, damage: impl FnOnce(&std::path::Path)) {
    let (receiver, url) = Receiver::start().await;
    receiver.down.store(true, Ordering::SeqCst);
    let (config, rules) = webhook_config(&url);
    let mut server = Server::start(&config, &rules);
    let (sent, accepted) = send(&server, label, 80, 25).await;
    assert_eq!(accepted.len(), sent);
    assert!(server.stop().success());
    let log_path = server.path("data/log.db");
    // A clean stop checkpoints the WAL; make sure of it so the damage hits the records.
    {
        let connection = rusqlite::Connection::open(&log_path).unwrap();
        connection
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    damage(&log_path);
    receiver.down.store(false, Ordering::SeqCst);
    server.restart();

    let log = server.log();
    let report = log
        .lines()
        .find(|line| line.contains("the event log was damaged"))
        .unwrap_or_else(|| panic!("the damage is reported: {log}"));
    let field = |name: &str| -> u64 {
        report
            .split_whitespace()
            .find_map(|part| part.strip_prefix(&format!("{name}=")))
            .and_then(|value| value.trim_matches('"').parse().ok())
            .unwrap_or_else(|| panic!("{name} in {report}"))
    };
    let kept = field("records_kept") as usize;
    assert!(kept > 0, "the intact part was kept: {report}");
    assert!(kept < accepted.len(), "the damage cost records: {report}");
    eventually(
        Duration::from_secs(60),
        "every kept record delivered",
        || receiver.delivered().len() >= kept,
    )
    .await;
    // Give a wrong extra delivery the chance to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delivered = receiver.delivered();
    let accepted: HashSet<String> = accepted.into_iter().collect();
    assert!(delivered.is_subset(&accepted), "only accepted events");
    assert_eq!(delivered.len(), kept, "exactly the kept records: {report}");
    let damaged_files = std::fs::read_dir(server.path("data"))
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("log.db.damaged-")
        })
        .count();
    assert!(damaged_files >= 1, "the damaged file is kept aside");
    // New events go on being accepted and delivered after the salvage.
    let (_, after) = send(&server, &format!("{label}-after"), 2, 25).await;
    eventually(Duration::from_secs(30), "new events delivered", || {
        after.iter().all(|id| receiver.delivered().contains(id))
    })
    .await;
    let reported = |name: &str| {
        report
            .split_whitespace()
            .find(|part| part.starts_with(&format!("{name}=")))
            .unwrap_or("?")
            .to_owned()
    };
    println!(
        "fault: log {label}: sent {sent}, accepted {}, kept {kept}, delivered {}, dead-lettered {}, lost to the damage {}, lost among kept 0 (reported: {} {} {})",
        accepted.len(),
        delivered.len(),
        dead_lettered(&server),
        accepted.len() - kept,
        reported("unreadable_offsets"),
        reported("unreadable_tail"),
        reported("offsets_kept"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_log_is_reported_and_its_intact_part_delivered() {
    damaged_log_run("truncated", |path| {
        let length = std::fs::metadata(path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_len(length / 2).unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_overwritten_in_the_middle_is_reported_and_the_rest_delivered() {
    damaged_log_run("overwritten", |path| {
        use std::io::{Seek, SeekFrom, Write};
        let length = std::fs::metadata(path).unwrap().len();
        let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        // Eight pages of garbage from the middle on.
        file.seek(SeekFrom::Start(length / 2 / 4096 * 4096))
            .unwrap();
        let mut rng = fastrand::Rng::with_seed(10);
        let garbage: Vec<u8> = (0..8 * 4096).map(|_| rng.u8(..)).collect();
        file.write_all(&garbage).unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_answers_503_then_recovers_without_damage() {
    // SQLite's max_page_count as the disk quota: 1 MiB of log; delivered records expire after
    // 1 s, and a refused append sweeps at once (at most once a second).
    let config = common::config_with("").replace(
        "data_dir = \"data\"",
        "data_dir = \"data\"\nmax_log_bytes = 1048576\nretention = \"1s\"\ndedup_window = \"1s\"",
    );
    let mut server = Server::start(&config, &common::sample_rules());
    let client = reqwest::Client::new();
    let mut accepted: Vec<String> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let mut sent = 0;
    let mut request = 0;
    let mut post = async |accepted: &mut Vec<String>, refused: &mut Vec<String>| {
        let ids: Vec<String> = (0..40).map(|n| format!("full-{request}-{n}")).collect();
        request += 1;
        let events: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "name": "login", "data": {"pad": "y".repeat(500)}}))
            .collect();
        sent += ids.len();
        let response = client
            .post(server.url("/v1/batch"))
            .bearer_auth(WRITE_KEY)
            .body(batch(&events))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => {
                accepted.extend(ids);
                true
            }
            503 => {
                assert!(response.headers().contains_key("retry-after"));
                refused.extend(ids);
                false
            }
            other => panic!("unexpected {other}"),
        }
    };
    // Fill it, faster than retention can free space.
    let mut fills = 0;
    let mut recoveries = 0;
    for _ in 0..3 {
        let mut filled = false;
        for _ in 0..400 {
            if !post(&mut accepted, &mut refused).await {
                filled = true;
                break;
            }
        }
        assert!(filled, "the log filled");
        fills += 1;
        // Clients retry: the ingest takes events again once delivered records expire.
        let mut recovered = false;
        for _ in 0..300 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if post(&mut accepted, &mut refused).await {
                recovered = true;
                break;
            }
        }
        assert!(recovered, "the ingest took events again without a restart");
        recoveries += 1;
    }
    let accepted_set: HashSet<String> = accepted.iter().cloned().collect();
    eventually(
        Duration::from_secs(60),
        "every accepted event archived",
        || {
            let archived: HashSet<String> = server
                .jsonl("data/archive.jsonl")
                .iter()
                .map(|event| event["id"].as_str().unwrap().to_owned())
                .collect();
            accepted_set.is_subset(&archived)
        },
    )
    .await;
    assert!(server.stop().success());
    let check: String = rusqlite::Connection::open(server.path("data/log.db"))
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok", "the log is intact");
    server.restart();
    assert!(
        !server.log().contains("the event log was damaged"),
        "{}",
        server.log()
    );
    let archive = server.jsonl("data/archive.jsonl");
    let archived: Vec<String> = archive
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect();
    let archived_set: HashSet<String> = archived.iter().cloned().collect();
    let warehouse: HashSet<String> = server.warehouse_ids().into_iter().collect();
    let lost = accepted_set.difference(&archived_set).count();
    let refused_stored = refused
        .iter()
        .filter(|id| archived_set.contains(*id) || warehouse.contains(*id))
        .count();
    println!(
        "fault: log full (max_log_bytes 1 MiB, 3 fills): sent {sent}, accepted {}, refused with 503 {}, delivered {} (archive; warehouse {}), dead-lettered 0, lost {lost}; {fills} fills, {recoveries} recoveries without restart, integrity_check ok",
        accepted_set.len(),
        refused.len(),
        archived_set.len(),
        warehouse.len()
    );
    assert_eq!(lost, 0);
    assert_eq!(refused_stored, 0, "a refused request stored nothing");
    assert_eq!(
        archived.len(),
        archived_set.len(),
        "no duplicates without a crash"
    );
    assert!(accepted_set.is_subset(&warehouse));
}
