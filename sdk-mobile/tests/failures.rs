//! Failed uploads keep the events; the backoff and the queue survive a restart.

mod common;

use common::{Answer, FakeUploader, open};
use tributary_mobile::TributaryError;

#[test]
fn a_server_error_keeps_the_events_and_the_next_attempt_delivers_them() {
    let dir = tempfile::tempdir().unwrap();
    let uploader = FakeUploader::new([Answer::Status(503)]);
    let client = open(&dir.path().join("events.db"), &uploader);
    client.track("kept".into(), String::new()).unwrap();
    let error = client.flush_blocking(10_000).unwrap_err();
    assert_eq!(
        error,
        TributaryError::Network {
            reason: "HTTP 503".into()
        }
    );
    assert_eq!(client.stats().consecutive_failures, 1);
    client.flush_blocking(10_000).unwrap();
    assert_eq!(client.stats().delivered, 1);
    assert_eq!(client.stats().consecutive_failures, 0);
}

#[test]
fn a_permanent_refusal_drops_and_counts_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let uploader = FakeUploader::new([Answer::Status(400)]);
    let client = open(&dir.path().join("events.db"), &uploader);
    client.track("bad".into(), String::new()).unwrap();
    client.flush_blocking(10_000).unwrap();
    let stats = client.stats();
    assert_eq!((stats.dropped_permanent, stats.queued), (1, 0));
}

#[test]
fn an_uploader_that_panics_counts_as_a_connection_failure() {
    let dir = tempfile::tempdir().unwrap();
    let uploader = FakeUploader::new([Answer::Panic]);
    let client = open(&dir.path().join("events.db"), &uploader);
    client.track("kept".into(), String::new()).unwrap();
    let error = client.flush_blocking(10_000).unwrap_err();
    assert!(matches!(error, TributaryError::Network { ref reason } if reason.contains("panicked")));
    client.flush_blocking(10_000).unwrap();
    assert_eq!(client.stats().delivered, 1);
}

#[test]
fn the_queue_the_identity_and_the_backoff_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("nested/events.db");
    let failing = FakeUploader::new([Answer::Fail, Answer::Fail, Answer::Fail]);
    let client = open(&store, &failing);
    let ids: Vec<String> = (0..5)
        .map(|_| {
            client
                .track("queued".into(), String::new())
                .unwrap()
                .unwrap()
        })
        .collect();
    client
        .identify(Some("user-1".into()), String::new())
        .unwrap();
    assert!(client.flush_blocking(10_000).is_err());
    let anonymous_id = client.anonymous_id();
    let failures = client.stats().consecutive_failures;
    client.set_opted_out(true);
    client.shutdown();
    drop(client);

    let working = FakeUploader::new([]);
    let client = open(&store, &working);
    let stats = client.stats();
    assert_eq!(stats.restored, 6);
    assert_eq!(stats.consecutive_failures, failures);
    assert_eq!(client.anonymous_id(), anonymous_id);
    assert_eq!(client.user_id().as_deref(), Some("user-1"));
    assert!(client.is_opted_out());
    client.flush_blocking(10_000).unwrap();
    let sent: Vec<String> = working
        .events()
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(&sent[..5], &ids[..]);
    assert_eq!(client.stats().queued, 0);
}

#[test]
fn calls_after_shutdown_fail_with_closed() {
    let dir = tempfile::tempdir().unwrap();
    let uploader = FakeUploader::new([]);
    let client = open(&dir.path().join("events.db"), &uploader);
    client.shutdown();
    assert_eq!(
        client.track("late".into(), String::new()),
        Err(TributaryError::Closed)
    );
    assert_eq!(client.flush_blocking(100), Err(TributaryError::Closed));
}

#[test]
fn a_flush_that_cannot_outlast_the_backoff_says_so_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // A refused key pauses the queue for the cap delay (300 s).
    let uploader = FakeUploader::new([Answer::Status(401)]);
    let client = open(&dir.path().join("events.db"), &uploader);
    client.track("kept".into(), String::new()).unwrap();
    assert!(client.flush_blocking(10_000).is_err());
    let started = std::time::Instant::now();
    let error = client.flush_blocking(10_000).unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        matches!(&error, TributaryError::Network { reason } if reason.contains("401") && reason.contains("next attempt in")),
        "{error}"
    );
    assert_eq!(client.stats().queued, 1);
}

#[test]
fn one_client_per_store_file_in_a_process() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("events.db");
    let uploader = FakeUploader::new([]);
    let first = open(&store, &uploader);
    // The same file through another spelling of its path.
    let same = dir.path().join(".").join("events.db");
    let error = tributary_mobile::TributaryClient::new(common::config(&same), uploader.clone())
        .unwrap_err();
    assert!(
        error.to_string().contains("store_path: already open"),
        "{error}"
    );
    first.shutdown();
    let second = open(&store, &uploader);
    second.track("again".into(), String::new()).unwrap();
}
