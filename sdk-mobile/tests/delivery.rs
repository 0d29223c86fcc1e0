//! Events go out in batches through the uploader, stamped with identity, source and context.

mod common;

use common::{FakeUploader, open};

#[test]
fn a_flush_sends_every_event_with_its_identity_and_context() {
    let dir = tempfile::tempdir().unwrap();
    let uploader = FakeUploader::new([]);
    let client = open(&dir.path().join("events.db"), &uploader);
    let first = client
        .track("login".into(), r#"{"method": "sso"}"#.into())
        .unwrap()
        .unwrap();
    client
        .identify(Some("user-42".into()), r#"{"plan": "pro"}"#.into())
        .unwrap();
    client.screen("Home".into(), String::new()).unwrap();
    client.flush_blocking(10_000).unwrap();

    let requests = uploader.requests.lock().unwrap().clone();
    let request = &requests[0];
    assert_eq!(request.url, "https://ingest.example.com/v1/batch");
    assert_eq!(request.headers["Authorization"], "Bearer test-key");
    assert_eq!(request.headers["Content-Type"], "application/json");
    let events = uploader.events();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["id"], first);
    assert_eq!(events[0]["data"]["method"], "sso");
    assert_eq!(events[0]["source"], "android");
    assert_eq!(events[0]["anonymous_id"], client.anonymous_id());
    assert_eq!(events[0]["context"]["app"]["name"], "tests");
    assert_eq!(events[0]["context"]["library"]["name"], "tributary-mobile");
    assert_eq!(events[1]["name"], "$identify");
    assert_eq!(events[2]["name"], "$screen");
    assert_eq!(events[2]["user_id"], "user-42");
    assert_eq!(events[2]["context"]["traits"]["plan"], "pro");
    let stats = client.stats();
    assert_eq!((stats.delivered, stats.queued, stats.uploads), (3, 0, 1));
}

#[test]
fn twenty_events_flush_without_being_asked() {
    let dir = tempfile::tempdir().unwrap();
    let uploader = FakeUploader::new([]);
    let client = open(&dir.path().join("events.db"), &uploader);
    for i in 0..20 {
        client
            .track("tick".into(), format!(r#"{{"i": {i}}}"#))
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while client.stats().delivered < 20 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(client.stats().delivered, 20);
    assert_eq!(uploader.requests.lock().unwrap().len(), 1);
}

#[test]
fn many_threads_track_at_once_and_every_event_goes_once() {
    let dir = tempfile::tempdir().unwrap();
    let uploader = FakeUploader::new([]);
    let client = open(&dir.path().join("events.db"), &uploader);
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let client = client.clone();
            std::thread::spawn(move || {
                (0..200)
                    .map(|i| {
                        client
                            .track("t".into(), format!(r#"{{"thread": {thread}, "i": {i}}}"#))
                            .unwrap()
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    client.flush_blocking(20_000).unwrap();
    let mut sent: Vec<String> = uploader
        .events()
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    sent.sort();
    assert_eq!(sent, ids);
}

#[test]
fn the_counters_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let uploader = FakeUploader::new([common::Answer::Status(400)]);
    let client = open(&dir.path().join("events.db"), &uploader);
    for i in 0..30 {
        client
            .track("tick".into(), format!(r#"{{"i": {i}}}"#))
            .unwrap();
    }
    assert!(client.track(String::new(), String::new()).is_err());
    client.flush_blocking(10_000).unwrap();
    let stats = client.stats();
    let dropped = stats.dropped_rejected
        + stats.dropped_permanent
        + stats.dropped_too_large
        + stats.dropped_expired;
    assert_eq!(stats.dropped_invalid, 1);
    assert!(stats.dropped_permanent > 0);
    assert_eq!(
        stats.tracked + stats.restored,
        stats.delivered + dropped + stats.evicted + stats.queued
    );
}

#[test]
fn every_call_from_many_threads_at_once_keeps_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    let uploader = FakeUploader::new([]);
    let client = open(&dir.path().join("events.db"), &uploader);
    let threads: Vec<_> = (0..6)
        .map(|thread| {
            let client = client.clone();
            std::thread::spawn(move || {
                let mut queued = 0;
                for i in 0..100 {
                    let outcome = match (thread + i) % 6 {
                        0 => client.track("t".into(), String::new()),
                        1 => client.screen("S".into(), String::new()),
                        2 => client.identify(Some(format!("user-{thread}")), "{}".into()),
                        3 => client.group("g".into(), String::new()),
                        4 => {
                            client.reset();
                            client.flush();
                            let _ = client.stats();
                            continue;
                        }
                        _ => {
                            client
                                .update_context(r#"{"network": {"wifi": true}}"#.into())
                                .unwrap();
                            client.wait_until_stored(10_000).unwrap();
                            continue;
                        }
                    };
                    assert!(outcome.unwrap().is_some());
                    queued += 1;
                }
                queued
            })
        })
        .collect();
    let queued: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    client.flush_blocking(20_000).unwrap();
    assert_eq!(client.stats().delivered, queued);
    assert_eq!(uploader.events().len() as u64, queued);
}

#[test]
fn bodies_are_gzipped_by_default() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let uploader = FakeUploader::new([]);
    let config = tributary_mobile::ClientConfig {
        gzip: None,
        ..common::config(&dir.path().join("events.db"))
    };
    let client = tributary_mobile::TributaryClient::new(config, uploader.clone()).unwrap();
    let id = client
        .track("zipped".into(), String::new())
        .unwrap()
        .unwrap();
    client.flush_blocking(10_000).unwrap();
    let request = uploader.requests.lock().unwrap()[0].clone();
    assert_eq!(request.headers["Content-Encoding"], "gzip");
    let mut json = String::new();
    flate2::read::GzDecoder::new(&request.body[..])
        .read_to_string(&mut json)
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(body["batch"][0]["id"], id);
}

#[test]
fn a_refused_identify_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let uploader = FakeUploader::new([]);
    let client = open(&dir.path().join("events.db"), &uploader);
    client
        .identify(Some("user-1".into()), r#"{"plan": "free"}"#.into())
        .unwrap();
    let huge = format!(r#"{{"bio": "{}"}}"#, "x".repeat(40 * 1024));
    let error = client.identify(Some("user-2".into()), huge).unwrap_err();
    assert!(error.to_string().starts_with("invalid input"), "{error}");
    assert_eq!(client.user_id().as_deref(), Some("user-1"));
    client.track("after".into(), String::new()).unwrap();
    client.flush_blocking(10_000).unwrap();
    let events = uploader.events();
    assert_eq!(events.last().unwrap()["user_id"], "user-1");
    assert_eq!(events.last().unwrap()["context"]["traits"]["plan"], "free");
}
