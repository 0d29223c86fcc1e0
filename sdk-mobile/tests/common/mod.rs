//! Shared pieces of the client's scenarios: a scripted fake uploader and a client on a temp store.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tributary_mobile::{
    ClientConfig, TributaryClient, UploadError, UploadRequest, UploadResponse, Uploader,
};

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Answer {
    Status(u16),
    Fail,
    Panic,
}

/// Answers from a script (then 200 with every event accepted) and records every request.
#[derive(Debug, Default)]
pub struct FakeUploader {
    script: Mutex<VecDeque<Answer>>,
    pub requests: Mutex<Vec<UploadRequest>>,
}

impl FakeUploader {
    pub fn new(script: impl IntoIterator<Item = Answer>) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(script.into_iter().collect()),
            requests: Mutex::default(),
        })
    }

    /// Every event of every request, in the order sent.
    pub fn events(&self) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|request| {
                let body: Value = serde_json::from_slice(&request.body).unwrap();
                body["batch"].as_array().unwrap().clone()
            })
            .collect()
    }
}

impl Uploader for FakeUploader {
    fn upload(&self, request: UploadRequest) -> Result<UploadResponse, UploadError> {
        self.requests.lock().unwrap().push(request);
        let answer = self.script.lock().unwrap().pop_front();
        match answer.unwrap_or(Answer::Status(200)) {
            Answer::Status(status) => Ok(UploadResponse {
                status,
                retry_after: None,
                body: Vec::new(),
            }),
            Answer::Fail => Err(UploadError::ConnectionFailed {
                reason: "connection refused".into(),
            }),
            Answer::Panic => panic!("the uploader panicked"),
        }
    }
}

pub fn config(store: &Path) -> ClientConfig {
    ClientConfig {
        write_key: "test-key".into(),
        endpoint: "https://ingest.example.com/".into(),
        store_path: store.to_string_lossy().into_owned(),
        source: "android".into(),
        context_json: r#"{"app": {"name": "tests"}}"#.into(),
        flush_at_events: None,
        flush_interval_millis: None,
        capacity_events: None,
        upload_timeout_millis: None,
        gzip: Some(false),
    }
}

pub fn open(store: &Path, uploader: &Arc<FakeUploader>) -> Arc<TributaryClient> {
    TributaryClient::new(config(store), uploader.clone()).unwrap()
}
