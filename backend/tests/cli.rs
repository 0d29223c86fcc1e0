//! The command line: `rules check`, zero-config `serve` from any folder with `send`'s demo
//! traffic, configuration errors, and graceful shutdown.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BINARY, Server, config_with, eventually, sample_rules, text};

const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rules-seed.json");

#[test]
fn the_articles_rules_file_checks_as_is() {
    let output = Command::new(BINARY)
        .args(["rules", "check", SEED])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output)
            .contains("ok: 3 rules for 3 destinations (mixpanel, hubspotcrm, datawarehouse)"),
        "{}",
        text(&output)
    );
}

#[test]
fn a_malformed_rules_file_gives_file_line_and_column() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("rules.json");
    std::fs::write(&path, "[\n {\n   \"destination_name\": \"mixpanel\",\n   \"destination_arn\": \"x\"\n   \"enabled_events\": []\n }\n]\n").unwrap();
    let output = Command::new(BINARY)
        .args(["rules", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let expected = format!("{}:5:4: expected `,` or `}}`", path.display());
    assert!(text(&output).contains(&expected), "{}", text(&output));
}

#[test]
fn rules_naming_an_unknown_destination_are_reported_where_they_name_it() {
    let folder = tempfile::tempdir().unwrap();
    let config = folder.path().join("tributary.toml");
    std::fs::write(
        &config,
        "[destinations.mixpanel]\nkind = \"jsonl\"\npath = \"m.jsonl\"\n",
    )
    .unwrap();
    let output = Command::new(BINARY)
        .args(["rules", "check", SEED, "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        text(&output).contains(&format!(
            "{SEED}:13:24: unknown destination \"hubspotcrm\"; the configuration has: mixpanel"
        )),
        "{}",
        text(&output)
    );
}

#[test]
fn a_config_with_an_unknown_key_does_not_start() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(
        folder.path().join("tributary.toml"),
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_tokn_env = \"X\"\n",
    )
    .unwrap();
    let output = Command::new(BINARY)
        .args(["serve"])
        .current_dir(folder.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        text(&output).contains("unknown field `admin_tokn_env`"),
        "{}",
        text(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_serve_from_an_empty_folder_routes_the_demo_traffic_as_the_rules_say() {
    let folder = tempfile::tempdir().unwrap();
    let mut child = KillOnDrop(
        Command::new(BINARY)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .current_dir(folder.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(folder.path().join("serve.log")).unwrap(),
            ))
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let address = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(address) = line.strip_prefix("tributary: listening on http://") {
            break address.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let send = Command::new(BINARY)
        .args(["send", "--endpoint", &format!("http://{address}")])
        .output()
        .unwrap();
    assert!(send.status.success(), "{}", text(&send));
    assert!(text(&send).contains("300 accepted"), "{}", text(&send));

    let data = folder.path().join("tributary-data");
    let count_lines = |name: &str| {
        std::fs::read_to_string(data.join(name)).map_or(0, |text| text.lines().count())
    };
    let warehouse_count = || {
        rusqlite::Connection::open(data.join("warehouse.db"))
            .and_then(|connection| {
                connection.query_row("SELECT COUNT(*) FROM events", [], |row| {
                    row.get::<_, i64>(0)
                })
            })
            .unwrap_or(0)
    };
    eventually(
        Duration::from_secs(20),
        "the demo traffic delivered",
        || warehouse_count() == 270 && count_lines("archive.jsonl") == 300,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        warehouse_count(),
        270,
        "the 270 events with the article's names"
    );
    assert_eq!(count_lines("archive.jsonl"), 300, "all 300");
    assert_eq!(
        count_lines("mixpanel.jsonl"),
        120,
        "page_view, search, button_click, page_scroll"
    );
    assert_eq!(
        count_lines("hubspotcrm.jsonl"),
        210,
        "seven of the nine names"
    );
}

/// Kills the server even when an assertion fails first.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_a_restart_delivers_nothing_twice() {
    let mut server = Server::start(&config_with(""), &sample_rules());
    let events: Vec<_> = (0..50)
        .map(|n| serde_json::json!({"id": format!("t-{n}"), "name": "search", "data": {}}))
        .collect();
    assert_eq!(
        common::post(&server.url("/v1/batch"), common::batch(&events))
            .await
            .status(),
        200
    );
    eventually(Duration::from_secs(10), "archived", || {
        server.jsonl("data/archive.jsonl").len() == 50
    })
    .await;
    let status = server.stop();
    assert!(status.success(), "{status:?}: {}", server.log());
    server.restart();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        server.jsonl("data/archive.jsonl").len(),
        50,
        "offsets were committed on shutdown"
    );
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let folder = tempfile::tempdir().unwrap();
    let mut child = KillOnDrop(
        Command::new(BINARY)
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .current_dir(folder.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let line: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|error| panic!("{error}: {first}"));
    assert_eq!(
        line["fields"]["message"], "tributary serve started",
        "{first}"
    );
    assert_eq!(line["level"], "INFO");
}
