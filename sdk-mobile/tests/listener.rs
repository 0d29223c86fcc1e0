//! The app's listener hears of every delivery, drop, retry and pause, in order.

mod common;

use std::sync::{Arc, Mutex};

use common::{Answer, FakeUploader, open};
use tributary_mobile::{DeliveryEvent, DeliveryListener};

#[derive(Default)]
struct Recorder(Mutex<Vec<DeliveryEvent>>);

impl DeliveryListener for Recorder {
    fn on_event(&self, event: DeliveryEvent) {
        self.0.lock().unwrap().push(event);
    }
}

struct Panicking;

impl DeliveryListener for Panicking {
    fn on_event(&self, _event: DeliveryEvent) {
        panic!("a broken listener");
    }
}

fn wait_for(recorder: &Recorder, count: usize) -> Vec<DeliveryEvent> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let events = recorder.0.lock().unwrap().clone();
        if events.len() >= count || std::time::Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn the_listener_hears_retries_deliveries_and_drops_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let uploader = FakeUploader::new([
        Answer::Status(503),
        Answer::Status(200),
        Answer::Status(400),
    ]);
    let client = open(&dir.path().join("events.db"), &uploader);
    let recorder = Arc::new(Recorder::default());
    client.set_listener(Some(recorder.clone()));

    client.track("first".into(), String::new()).unwrap();
    assert!(client.flush_blocking(10_000).is_err());
    client.flush_blocking(10_000).unwrap();
    client.track("refused".into(), String::new()).unwrap();
    client.flush_blocking(10_000).unwrap();
    assert!(
        client
            .track(String::new(), r#"{"email": "a@example.com"}"#.into())
            .is_err()
    );

    let events = wait_for(&recorder, 4);
    assert!(
        matches!(&events[0], DeliveryEvent::RetryScheduled { count: 1, consecutive_failures: 1, cause, .. } if cause == "HTTP 503"),
        "{events:?}"
    );
    assert_eq!(events[1], DeliveryEvent::Delivered { count: 1 });
    assert!(
        matches!(&events[2], DeliveryEvent::Dropped { count: 1, reason, detail } if reason == "permanent" && detail.starts_with("HTTP 400")),
        "{events:?}"
    );
    assert_eq!(
        events[3],
        DeliveryEvent::Dropped {
            count: 1,
            reason: "invalid".into(),
            detail: "the event breaks an envelope rule".into()
        }
    );
    assert_eq!(events.len(), 4);
}

#[test]
fn a_panicking_listener_does_not_stop_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let uploader = FakeUploader::new([]);
    let client = open(&dir.path().join("events.db"), &uploader);
    client.set_listener(Some(Arc::new(Panicking)));
    for _ in 0..3 {
        client.track("t".into(), String::new()).unwrap();
        client.flush_blocking(10_000).unwrap();
    }
    assert_eq!(client.stats().delivered, 3);
    client.set_listener(None);
    client.track("t".into(), String::new()).unwrap();
    client.flush_blocking(10_000).unwrap();
}
