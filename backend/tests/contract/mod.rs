//! Local stand-ins for the destinations, built from their documentation: each implements the
//! documented request format, validation and answers, and serves the documented answer bodies
//! stored in `tests/data/vendor/` (with their source URLs). Tests script failures on top (a
//! status for the next requests, a slow answer) and read back every request exactly as sent.

#![allow(dead_code, unreachable_pub)]

pub mod hubspot;
pub mod mixpanel;
pub mod postgres;

use std::path::Path;

use serde_json::Value;

/// A documented example: `tests/data/vendor/<relative>`.
pub fn vendor_file(relative: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/vendor")
        .join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path:?}: {error}"));
    let value: Value = serde_json::from_str(&text).unwrap();
    assert!(
        value["source"]
            .as_str()
            .is_some_and(|url| url.starts_with("https://")),
        "{relative} names its source"
    );
    value
}

/// An answer a test puts in front of the destination's own behaviour.
#[derive(Clone, Debug)]
pub enum Scripted {
    /// This status with the documented body for it (when there is one).
    Status(u16),
    /// This status, body and headers.
    Raw(u16, String, Vec<(String, String)>),
    /// Process the request normally, but answer after this long.
    Slow(std::time::Duration),
}

/// Starts an axum app on 127.0.0.1 and returns its base URL.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// The DLQ message bodies in a data folder.
pub fn dlq_messages(data_dir: &Path) -> Vec<Value> {
    let path = data_dir.join("dlq.db");
    if !path.exists() {
        return Vec::new();
    }
    let connection = rusqlite::Connection::open(path).unwrap();
    connection
        .busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    let mut statement = connection
        .prepare("SELECT body FROM messages ORDER BY id")
        .unwrap();
    statement
        .query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .map(|body| serde_json::from_str(&body.unwrap()).unwrap())
        .collect()
}

/// Files under `folder` (recursively) whose bytes contain `needle`.
pub fn files_containing(folder: &Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![folder.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes())
            {
                found.push(path);
            }
        }
    }
    found
}

/// A stored event for a connector, from an envelope.
pub fn outgoing(envelope: &Value) -> tributary_backend::connectors::OutgoingEvent {
    let id = envelope["id"].as_str().unwrap().to_owned();
    tributary_backend::connectors::OutgoingEvent {
        partition_key: id.clone(),
        id,
        name: envelope["name"].as_str().unwrap().to_owned(),
        json: envelope.to_string().into(),
    }
}
