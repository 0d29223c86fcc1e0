//! A queue restarted on the same store picks up its records and its backoff.

mod common;

use std::time::Duration;

use common::{Platform, names};
use tributary_core::Policy;
use tributary_core::queue::UploadOutcome;

#[test]
fn a_restarted_queue_resends_what_was_not_delivered_and_keeps_backing_off() {
    let mut platform = Platform::new(Policy::mobile());
    platform.track(25);
    let uploads = platform.run();
    assert_eq!(uploads[0].event_count, 25);
    platform.respond(&uploads[0], UploadOutcome::status(503));
    platform.run();
    let wake = platform.last_wait.unwrap();

    // The process dies; a new one opens the same store.
    let mut restarted = Platform::with_store(Policy::mobile(), platform.store.clone());
    restarted.now = platform.now;
    assert_eq!(restarted.queue.len(), 25);
    assert_eq!(restarted.queue.retry_state().consecutive_failures, 1);
    assert!(
        restarted.run().is_empty(),
        "still backing off after the restart"
    );
    assert_eq!(restarted.last_wait, Some(wake));

    restarted.track(1);
    restarted.advance_to_wake();
    let retry = restarted.run();
    assert_eq!(retry[0].event_count, 26);
    assert_eq!(names(&retry[0])[0], "e-0");
    assert_eq!(
        names(&retry[0])[25],
        "e-0",
        "the new process counts its own events from 0"
    );
    restarted.respond_status(&retry[0], 200);
    restarted.run();
    assert!(restarted.store.is_empty());
    assert_eq!(restarted.queue.counters().restored, 25);
    restarted.assert_counters_add_up();
}

#[test]
fn restored_events_older_than_the_interval_flush_at_once() {
    let mut platform = Platform::new(Policy::mobile());
    platform.track(3);
    platform.run();
    let mut restarted = Platform::with_store(Policy::mobile(), platform.store.clone());
    restarted.now = platform.now.saturating_add(Duration::from_secs(60));
    let uploads = restarted.run();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].event_count, 3);
}
