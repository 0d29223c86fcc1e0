//! Shared helpers: the real `tributary` binary in a temporary folder, and readers of what it
//! delivered.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BINARY: &str = env!("CARGO_BIN_EXE_tributary");
pub const WRITE_KEY: &str = "test-key";

/// The samples' destinations with a test key; `extra` is appended (more destinations, settings).
pub fn config_with(extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
write_keys = ["{WRITE_KEY}"]

[storage]
data_dir = "data"

[routing]
rules = "rules.json"

[destinations.datawarehouse]
kind = "sqlite"
path = "data/warehouse.db"

[destinations.archive]
kind = "jsonl"
path = "data/archive.jsonl"

[destinations.mixpanel]
kind = "jsonl"
path = "data/mixpanel.jsonl"

[destinations.hubspotcrm]
kind = "jsonl"
path = "data/hubspotcrm.jsonl"
{extra}"#
    )
}

/// `samples/rules.json`.
pub fn sample_rules() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/rules.json"))
        .unwrap()
}

/// A `tributary serve` process in its own folder.
pub struct Server {
    pub folder: tempfile::TempDir,
    pub address: String,
    child: Option<Child>,
    envs: Vec<(String, String)>,
}

impl Server {
    /// Writes `tributary.toml` and `rules.json` into a new folder and starts the server there.
    pub fn start(config: &str, rules: &str) -> Self {
        Self::start_with_env(config, rules, &[])
    }

    pub fn start_with_env(config: &str, rules: &str, envs: &[(&str, &str)]) -> Self {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("tributary.toml"), config).unwrap();
        std::fs::write(folder.path().join("rules.json"), rules).unwrap();
        let envs = envs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let mut server = Self {
            folder,
            address: String::new(),
            child: None,
            envs,
        };
        server.launch(None);
        server
    }

    fn launch(&mut self, listen: Option<&str>) {
        let mut command = Command::new(BINARY);
        command
            .args(["serve", "--config", "tributary.toml"])
            .current_dir(self.folder.path())
            .env("RUST_LOG", "warn,tributary_backend=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(self.folder.path().join("serve.log")).unwrap(),
            ));
        if let Some(listen) = listen {
            command.args(["--listen", listen]);
        }
        for (name, value) in &self.envs {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("serve exited: {}", self.log()))
                .unwrap();
            if let Some(address) = line.strip_prefix("tributary: listening on http://") {
                break address.to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.address = address;
        self.child = Some(child);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.folder.path().join(relative)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.folder.path().join("serve.log")).unwrap_or_default()
    }

    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The process's peak resident memory (`VmHWM`), in KiB.
    pub fn peak_memory_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts again in the same folder, on the same address.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill first");
        let address = self.address.clone();
        self.launch(Some(&address));
    }

    /// Runs `tributary ARGS` in the server's folder (so it finds `tributary.toml`).
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut command = Command::new(BINARY);
        command.args(args).current_dir(self.folder.path());
        for (name, value) in &self.envs {
            command.env(name, value);
        }
        command.output().unwrap()
    }

    /// Events in the SQLite warehouse.
    pub fn warehouse_ids(&self) -> Vec<String> {
        if !self.path("data/warehouse.db").exists() {
            return Vec::new();
        }
        self.sqlite_strings("data/warehouse.db", "SELECT id FROM events ORDER BY rowid")
    }

    /// The one text column `query` selects from the SQLite file at `relative`, read while the
    /// server may be writing it.
    pub fn sqlite_strings(&self, relative: &str, query: &str) -> Vec<String> {
        let connection = rusqlite::Connection::open(self.path(relative)).unwrap();
        connection.busy_timeout(Duration::from_secs(5)).unwrap();
        let mut statement = connection.prepare(query).unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Envelopes in a JSON Lines file.
    pub fn jsonl(&self, relative: &str) -> Vec<Value> {
        let Ok(text) = std::fs::read_to_string(self.path(relative)) else {
            return Vec::new();
        };
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// `/metrics` as a map of series to values.
    pub async fn metrics(&self) -> std::collections::HashMap<String, f64> {
        let text = reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| line.rsplit_once(' '))
            .map(|(series, value)| (series.to_owned(), value.parse().unwrap()))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls until `condition` holds; panics with `what` after `limit`.
pub async fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A batch body with these events.
pub fn batch(events: &[Value]) -> String {
    serde_json::json!({ "batch": events }).to_string()
}

/// POSTs a body with the test key.
pub async fn post(url: &str, body: String) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .bearer_auth(WRITE_KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
