//! Capacity: when the queue is full the oldest events are evicted, and every drop is counted.

mod common;

use common::{Platform, names};
use tributary_core::Policy;
use tributary_core::queue::QueueEvent;

#[test]
fn the_oldest_are_evicted_at_ten_thousand_events() {
    let mut platform = Platform::new(Policy::mobile());
    // Offline: the first batch fails, so nothing leaves while the app keeps tracking.
    platform.track(20);
    let uploads = platform.run();
    platform.respond(
        &uploads[0],
        tributary_core::UploadOutcome::ConnectionFailed("offline".into()),
    );
    platform.run();
    platform.track(10_000 - 20 + 7);
    platform.run();

    assert_eq!(platform.queue.len(), 10_000);
    assert_eq!(platform.queue.counters().evicted, 7);
    assert_eq!(
        platform.store.len(),
        10_000,
        "evicted records are deleted from the store"
    );
    let evicted: usize = platform
        .events
        .iter()
        .map(|event| {
            if let QueueEvent::Evicted { count } = event {
                *count
            } else {
                0
            }
        })
        .sum();
    assert_eq!(evicted, 7, "the app is told");

    // The survivors are the newest 10,000: e-7 … e-10006.
    platform.advance_to_wake();
    let retry = platform.run();
    assert_eq!(names(&retry[0])[0], "e-7");
    platform.assert_counters_add_up();
}

#[test]
fn the_byte_capacity_evicts_too() {
    let mut policy = Policy::browser();
    policy.flush_at_events = usize::MAX;
    let mut platform = Platform::new(policy);
    // 2 MiB of capacity; 100 events of about 30 KiB each is 3 MiB.
    for index in 0..100 {
        platform.track_sized(&format!("big-{index}"), 30_000);
    }
    platform.run();
    let queued = platform.queue.queued_bytes();
    assert!(queued <= 2 * 1024 * 1024, "{queued}");
    let evicted = platform.queue.counters().evicted;
    assert!((30..=40).contains(&evicted), "evicted {evicted}");
    assert_eq!(platform.queue.len() as u64 + evicted, 100);
    platform.assert_counters_add_up();
}

#[test]
fn browsers_hold_a_thousand_events() {
    let mut policy = Policy::browser();
    policy.flush_at_events = usize::MAX;
    let mut platform = Platform::new(policy);
    platform.track(1_500);
    platform.run();
    assert_eq!(platform.queue.len(), 1_000);
    assert_eq!(platform.queue.counters().evicted, 500);
}

#[test]
fn records_evicted_before_they_were_persisted_are_never_written() {
    let mut policy = Policy::mobile();
    policy.capacity_events = 10;
    policy.flush_at_events = usize::MAX;
    let mut platform = Platform::new(policy);
    platform.track(25);
    let mut persisted = 0;
    let mut deleted = 0;
    loop {
        match platform.queue.poll(platform.now) {
            tributary_core::Work::Persist(records) => persisted += records.len(),
            tributary_core::Work::Delete(seqs) => deleted += seqs.len(),
            _ => break,
        }
    }
    assert_eq!((persisted, deleted), (10, 0));
}

#[test]
fn invalid_events_are_counted_and_nothing_is_queued() {
    let mut platform = Platform::new(Policy::mobile());
    let error = platform
        .queue
        .enqueue(common::event("$unknown", 0), platform.now)
        .unwrap_err();
    assert_eq!(error.field, "name");
    let error = platform
        .queue
        .enqueue(common::event("huge", 40_000), platform.now)
        .unwrap_err();
    assert!(error.to_string().starts_with("event: is "), "{error}");
    assert_eq!(platform.queue.counters().dropped.invalid, 2);
    assert!(platform.queue.is_empty());
    platform.assert_counters_add_up();
}
