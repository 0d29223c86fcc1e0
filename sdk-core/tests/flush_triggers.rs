//! Each flush trigger: the event count, the age of the oldest event, and an explicit flush.

mod common;

use std::time::Duration;

use common::{Platform, names};
use tributary_core::Policy;

#[test]
fn nineteen_events_wait_for_the_interval_the_twentieth_flushes() {
    let mut platform = Platform::new(Policy::mobile());
    platform.track(19);
    assert!(platform.run().is_empty());
    assert_eq!(
        platform.wait_delay(),
        Duration::from_secs(10),
        "woken when the oldest is 10 s old"
    );

    platform.track(1);
    let uploads = platform.run();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].event_count, 20);
    assert_eq!(names(&uploads[0])[0], "e-0");
    assert_eq!(names(&uploads[0])[19], "e-19");
}

#[test]
fn the_oldest_event_flushes_after_ten_seconds() {
    let mut platform = Platform::new(Policy::mobile());
    platform.track(1);
    platform.advance(Duration::from_secs(4));
    platform.track(2);
    assert!(platform.run().is_empty());
    assert_eq!(
        platform.wait_delay(),
        Duration::from_secs(6),
        "measured from the oldest event"
    );

    platform.advance(Duration::from_millis(5_999));
    assert!(platform.run().is_empty(), "not a millisecond early");
    platform.advance(Duration::from_millis(1));
    let uploads = platform.run();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].event_count, 3);
}

#[test]
fn an_explicit_flush_sends_at_once() {
    let mut platform = Platform::new(Policy::mobile());
    platform.track(3);
    platform.queue.request_flush();
    let uploads = platform.run();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].event_count, 3);

    // The request is spent: the next event waits for a trigger again.
    platform.respond_status(&uploads[0], 200);
    platform.track(1);
    assert!(platform.run().is_empty());
}

#[test]
fn servers_flush_at_100_events_or_after_one_second() {
    let mut platform = Platform::new(Policy::server());
    platform.track(99);
    assert!(platform.run().is_empty());
    assert_eq!(platform.wait_delay(), Duration::from_secs(1));
    platform.track(1);
    assert_eq!(platform.run()[0].event_count, 100);

    platform.track(5);
    assert!(platform.run().is_empty());
    platform.advance(Duration::from_secs(1));
    assert_eq!(platform.run()[0].event_count, 5);
}

#[test]
fn an_empty_queue_is_idle() {
    let mut platform = Platform::new(Policy::mobile());
    platform.queue.request_flush();
    assert!(platform.run().is_empty());
    assert_eq!(platform.last_wait, None);
}

#[test]
fn a_clock_that_jumps_back_delays_the_flush_by_one_interval_at_most() {
    let mut platform = Platform::new(Policy::mobile());
    platform.track(1);
    platform.now =
        tributary_core::Timestamp::from_unix_millis(common::START.as_unix_millis() - 3_600_000);
    assert!(platform.run().is_empty());
    assert_eq!(platform.wait_delay(), Duration::from_secs(10));
}
