//! Each outcome class: delivered, retryable, permanent, paused (401/403) and the 413 split.

mod common;

use std::time::Duration;

use common::{Platform, names, ok_with_rejected};
use tributary_core::Policy;
use tributary_core::queue::{DropReason, QueueEvent, UploadOutcome};

fn platform_with_one_upload(count: usize) -> (Platform, tributary_core::queue::Upload) {
    let mut platform = Platform::new(Policy::mobile());
    platform.track(count);
    platform.queue.request_flush();
    let mut uploads = platform.run();
    assert_eq!(uploads.len(), 1);
    (platform, uploads.remove(0))
}

#[test]
fn a_2xx_delivers_and_deletes() {
    for status in [200, 201, 202, 204] {
        let (mut platform, upload) = platform_with_one_upload(5);
        assert_eq!(platform.store.len(), 5, "persisted before the upload");
        platform.respond_status(&upload, status);
        platform.run();
        assert_eq!(platform.queue.counters().delivered, 5, "{status}");
        assert!(platform.queue.is_empty());
        assert!(platform.store.is_empty(), "delivered records are deleted");
        platform.assert_counters_add_up();
    }
}

#[test]
fn rejected_entries_in_a_200_are_dropped_and_counted() {
    let (mut platform, upload) = platform_with_one_upload(4);
    platform.respond(&upload, ok_with_rejected(&[1, 3]));
    platform.run();
    let counters = platform.queue.counters();
    assert_eq!((counters.delivered, counters.dropped.rejected), (2, 2));
    assert!(platform.events.iter().any(|event| matches!(
        event,
        QueueEvent::Dropped { count: 2, reason: DropReason::Rejected, detail } if detail.contains("name")
    )));
    platform.assert_counters_add_up();
}

#[test]
fn retryable_answers_keep_the_events_and_back_off() {
    let outcomes = [
        UploadOutcome::status(408),
        UploadOutcome::status(429),
        UploadOutcome::status(500),
        UploadOutcome::status(502),
        UploadOutcome::status(503),
        UploadOutcome::status(504),
        UploadOutcome::ConnectionFailed("connection refused".into()),
        UploadOutcome::TimedOut,
    ];
    for outcome in outcomes {
        let (mut platform, upload) = platform_with_one_upload(5);
        platform.respond(&upload, outcome.clone());
        assert!(
            platform.run().is_empty(),
            "{outcome:?}: no immediate retry before the backoff"
        );
        assert!(
            platform.wait_delay() <= Duration::from_millis(500),
            "{outcome:?}: first ceiling"
        );
        assert_eq!(platform.queue.len(), 5);
        assert_eq!(platform.store.len(), 5, "{outcome:?}: nothing deleted");
        assert_eq!(platform.queue.counters().retried, 5);

        platform.advance_to_wake();
        let retry = platform.run();
        assert_eq!(
            retry.len(),
            1,
            "{outcome:?}: retried once the backoff is over"
        );
        assert_eq!(names(&retry[0]), names(&upload), "same events, same order");
        assert_eq!(retry[0].consecutive_failures, 1);
        platform.respond_status(&retry[0], 200);
        platform.run();
        assert_eq!(platform.queue.counters().delivered, 5);
        assert_eq!(
            platform.queue.retry_state().consecutive_failures,
            0,
            "success resets backoff"
        );
        platform.assert_counters_add_up();
    }
}

#[test]
fn permanent_answers_drop_the_batch_and_count_it() {
    for status in [400, 404, 409, 422] {
        let (mut platform, upload) = platform_with_one_upload(5);
        platform.respond_status(&upload, status);
        platform.run();
        assert!(platform.queue.is_empty(), "{status}");
        assert!(platform.store.is_empty(), "{status}");
        assert_eq!(platform.queue.counters().dropped.permanent, 5, "{status}");
        assert!(platform.events.iter().any(|event| matches!(
            event,
            QueueEvent::Dropped { count: 5, reason: DropReason::Permanent, detail } if detail.contains(&status.to_string())
        )));
        platform.assert_counters_add_up();
    }
}

#[test]
fn a_refused_key_pauses_without_dropping_anything_even_past_the_give_up_age() {
    for status in [401, 403] {
        let (mut platform, upload) = platform_with_one_upload(5);
        platform.respond_status(&upload, status);
        assert!(platform.run().is_empty());
        assert_eq!(
            platform.wait_delay(),
            Duration::from_secs(300),
            "{status}: the cap delay"
        );
        assert!(platform.queue.retry_state().paused);

        // New events do not break the pause.
        platform.track(30);
        assert!(
            platform.run().is_empty(),
            "{status}: nothing goes out while paused"
        );

        // Thirteen hours of refusals: nothing is dropped.
        for _ in 0..160 {
            platform.advance_to_wake();
            let probes = platform.run();
            assert_eq!(probes.len(), 1, "{status}: one probe at a time");
            platform.respond_status(&probes[0], status);
            platform.run();
        }
        assert_eq!(platform.queue.len(), 35);
        assert_eq!(platform.queue.counters().dropped.expired, 0);

        // The key is fixed: everything goes.
        platform.advance_to_wake();
        let mut delivered = 0;
        loop {
            let uploads = platform.run();
            if uploads.is_empty() {
                break;
            }
            for upload in uploads {
                delivered += upload.event_count;
                platform.respond_status(&upload, 200);
            }
        }
        assert_eq!(delivered, 35, "{status}");
        assert!(!platform.queue.retry_state().paused);
        platform.assert_counters_add_up();
    }
}

#[test]
fn a_413_splits_the_batch_in_two_halves_in_order() {
    let (mut platform, upload) = platform_with_one_upload(5);
    let all = names(&upload);
    platform.respond_status(&upload, 413);
    let first = platform.run();
    assert_eq!(first.len(), 1, "retried at once, without backoff");
    assert_eq!(names(&first[0]), all[..2]);
    platform.respond_status(&first[0], 200);
    let second = platform.run();
    assert_eq!(names(&second[0]), all[2..]);
    platform.respond_status(&second[0], 413);
    let third = platform.run();
    assert_eq!(names(&third[0]), all[2..3]);
    platform.respond_status(&third[0], 200);
    let fourth = platform.run();
    assert_eq!(names(&fourth[0]), all[3..]);
    platform.respond_status(&fourth[0], 200);
    platform.run();
    assert_eq!(platform.queue.counters().delivered, 5);
    assert!(platform.store.is_empty());
    platform.assert_counters_add_up();
}

#[test]
fn a_single_event_still_too_large_is_dropped() {
    let (mut platform, upload) = platform_with_one_upload(1);
    platform.respond_status(&upload, 413);
    platform.run();
    assert!(platform.queue.is_empty());
    assert_eq!(platform.queue.counters().dropped.too_large, 1);
    platform.assert_counters_add_up();
}

#[test]
fn an_outcome_reported_twice_is_ignored() {
    let (mut platform, upload) = platform_with_one_upload(2);
    platform.respond_status(&upload, 200);
    platform.respond_status(&upload, 500);
    platform.run();
    assert_eq!(platform.queue.counters().delivered, 2);
    assert_eq!(platform.queue.retry_state().consecutive_failures, 0);
}
