//! What the web SDK relies on: events serialized by the platform, 2xx answers read by the
//! platform (`UploadOutcome::Accepted`), a beacon's upload within a byte budget, and failed
//! uploads merged back in sequence order.

mod common;

use common::{Platform, START, names};
use tributary_core::Policy;
use tributary_core::queue::{BODY_RESERVE_BYTES, DropReason, RejectedEvent, UploadOutcome};

fn serialized(id: &str, name: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","name":"{name}","data":{{}}}}"#).into_bytes()
}

#[test]
fn platform_serialized_events_are_checked_and_queued_verbatim() {
    let mut platform = Platform::new(Policy::browser());
    let json = serialized("a", "login");
    platform
        .queue
        .enqueue_serialized("login", json.clone(), START)
        .unwrap();
    let error = platform
        .queue
        .enqueue_serialized("", serialized("b", ""), START)
        .unwrap_err();
    assert_eq!(error.to_string(), "name: must not be empty");
    let too_large = vec![b' '; 32 * 1024 + 1];
    let error = platform
        .queue
        .enqueue_serialized("big", too_large, START)
        .unwrap_err();
    assert!(error.to_string().starts_with("event: "), "{error}");
    assert_eq!(
        platform.queue.counters().dropped.get(DropReason::Invalid),
        2
    );

    platform.queue.request_flush();
    let uploads = platform.run();
    assert_eq!(uploads.len(), 1);
    let body = String::from_utf8(uploads[0].body.clone()).unwrap();
    assert!(body.starts_with(r#"{"batch":[{"id":"a","name":"login","data":{}}],"sent_at":""#));
    assert_eq!(platform.store.len(), 1, "stored before the upload");
}

#[test]
fn a_2xx_read_by_the_platform_counts_its_rejections() {
    let mut platform = Platform::new(Policy::browser());
    platform.track(3);
    platform.queue.request_flush();
    let upload = platform.run().remove(0);
    let rejected = vec![
        RejectedEvent {
            index: 2,
            error: "data: must be a JSON object".into(),
        },
        RejectedEvent {
            index: 2,
            error: String::new(),
        },
        RejectedEvent {
            index: 7,
            error: String::new(),
        },
    ];
    platform.respond(&upload, UploadOutcome::Accepted { rejected });
    platform.run();
    let counters = platform.queue.counters();
    assert_eq!((counters.delivered, counters.dropped.rejected), (2, 1));
    assert!(platform.store.is_empty());
    platform.assert_counters_add_up();
}

#[test]
fn a_beacon_upload_takes_the_oldest_events_that_fit_whatever_the_backoff() {
    let mut platform = Platform::new(Policy::browser());
    for _ in 0..10 {
        platform.track_sized("e", 100);
    }
    platform.queue.request_flush();
    let first = platform.run().remove(0);
    platform.respond(&first, UploadOutcome::status(503));
    platform.run();
    assert!(
        platform.last_wait.is_some_and(|wake| wake > platform.now),
        "backing off"
    );

    let one_event = first.body.len() / 10;
    assert!(
        platform
            .queue
            .start_upload_within(BODY_RESERVE_BYTES + 10, platform.now)
            .is_none(),
        "not even one event fits"
    );
    let budget = BODY_RESERVE_BYTES + 60 + 3 * one_event;
    let beacon = platform
        .queue
        .start_upload_within(budget, platform.now)
        .expect("an upload despite the backoff");
    assert!(
        beacon.event_count >= 2 && beacon.event_count <= 3,
        "{}",
        beacon.event_count
    );
    assert!(beacon.body.len() + BODY_RESERVE_BYTES <= budget);
    assert_eq!(names(&beacon), names(&first)[..beacon.event_count]);
    platform.respond(&beacon, UploadOutcome::Accepted { rejected: vec![] });
    platform.run();
    assert_eq!(platform.queue.len(), 10 - beacon.event_count);
    platform.assert_counters_add_up();
}

#[test]
fn uploads_failing_out_of_order_go_back_in_sequence_order() {
    let mut policy = Policy::browser();
    policy.max_concurrent_uploads = 3;
    policy.max_batch_events = 2;
    let mut platform = Platform::new(policy);
    platform.track(6);
    platform.queue.request_flush();
    let uploads = platform.run();
    assert_eq!(uploads.len(), 3);
    platform.track(1);
    // The middle batch fails first, then the last, then the first.
    platform.respond(&uploads[1], UploadOutcome::status(500));
    platform.respond(&uploads[2], UploadOutcome::TimedOut);
    platform.respond(&uploads[0], UploadOutcome::ConnectionFailed("reset".into()));
    platform.queue.request_flush();
    platform.advance(std::time::Duration::from_secs(600));
    let mut order = Vec::new();
    for _ in 0..10 {
        for upload in platform.run() {
            order.extend(names(&upload));
            platform.respond(&upload, UploadOutcome::Accepted { rejected: vec![] });
        }
    }
    assert_eq!(order, ["e-0", "e-1", "e-2", "e-3", "e-4", "e-5", "e-6"]);
    platform.assert_counters_add_up();
}
