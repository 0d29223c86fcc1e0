//! A scripted ingest on 127.0.0.1: answers each `POST /v1/batch` with the next scripted reply
//! and records what it received.

#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;

/// One scripted answer.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    /// Answer with this status and `{"accepted": N, "rejected": []}` for 2xx.
    Status(u16),
    /// Answer with this status and a `Retry-After` in seconds.
    RetryAfter(u16, u64),
    /// Never answer (until the client gives up).
    Hang,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub events: Vec<Value>,
    pub status: Option<u16>,
    pub at: Instant,
    pub authorization: Option<String>,
    pub content_encoding: Option<String>,
}

#[derive(Default)]
struct Script {
    replies: VecDeque<Reply>,
    otherwise: Option<Reply>,
    received: Vec<Received>,
}

#[derive(Clone)]
pub struct ScriptedIngest {
    pub url: String,
    script: Arc<Mutex<Script>>,
}

impl ScriptedIngest {
    /// Starts the server; every request past the script gets `otherwise` (default 200).
    pub async fn start(replies: impl IntoIterator<Item = Reply>) -> Self {
        let script = Arc::new(Mutex::new(Script {
            replies: replies.into_iter().collect(),
            otherwise: None,
            received: Vec::new(),
        }));
        let app = Router::new()
            .route("/v1/batch", post(batch))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, script }
    }

    /// What every request past the script gets from now on.
    pub fn otherwise(&self, reply: Reply) {
        self.script.lock().unwrap().otherwise = Some(reply);
    }

    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }

    /// Ids of events in requests answered 2xx, with how many times each was accepted.
    pub fn accepted_ids(&self) -> HashMap<String, usize> {
        let mut ids = HashMap::new();
        for request in self.received() {
            if request
                .status
                .is_some_and(|status| (200..300).contains(&status))
            {
                for event in &request.events {
                    *ids.entry(event["id"].as_str().unwrap().to_owned())
                        .or_default() += 1;
                }
            }
        }
        ids
    }

    pub fn request_count(&self) -> usize {
        self.script.lock().unwrap().received.len()
    }
}

async fn batch(
    State(script): State<Arc<Mutex<Script>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_encoding = header(&headers, "content-encoding");
    let body = if content_encoding.as_deref() == Some("gzip") {
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut decoded)
            .unwrap();
        decoded
    } else {
        body.to_vec()
    };
    let parsed: Value = serde_json::from_slice(&body).expect("the SDK sends JSON");
    assert!(parsed["sent_at"].is_string(), "every batch has sent_at");
    let events = parsed["batch"].as_array().expect("a batch").clone();
    let reply = {
        let mut script = script.lock().unwrap();
        let reply = script
            .replies
            .pop_front()
            .or(script.otherwise)
            .unwrap_or(Reply::Status(200));
        let status = match reply {
            Reply::Status(status) | Reply::RetryAfter(status, _) => Some(status),
            Reply::Hang => None,
        };
        script.received.push(Received {
            events: events.clone(),
            status,
            at: Instant::now(),
            authorization: header(&headers, "authorization"),
            content_encoding,
        });
        reply
    };
    match reply {
        Reply::Status(status) => respond(status, events.len(), None),
        Reply::RetryAfter(status, seconds) => respond(status, events.len(), Some(seconds)),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}

fn respond(status: u16, count: usize, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    let body = if status.is_success() {
        format!(r#"{{"accepted":{count},"rejected":[]}}"#)
    } else {
        r#"{"error":{"code":"scripted","message":"scripted failure"}}"#.to_owned()
    };
    let mut response = (status, [("content-type", "application/json")], body).into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", seconds.to_string().parse().unwrap());
    }
    response
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Waits until `condition` holds, polling; panics after `limit`.
pub async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
