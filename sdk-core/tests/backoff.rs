//! Backoff: full-jitter delays within their bounds and the cap, `Retry-After`, the give-up age.

mod common;

use std::time::Duration;

use common::Platform;
use tributary_core::Policy;
use tributary_core::queue::{QueueEvent, UploadOutcome};

/// Fails `failures` uploads in a row and returns each backoff delay chosen.
fn delays_after_failures(seed_events: usize, failures: u32) -> Vec<Duration> {
    let mut platform = Platform::new(Policy::mobile());
    platform.track(seed_events);
    platform.queue.request_flush();
    let mut delays = Vec::new();
    for _ in 0..failures {
        let uploads = platform.run();
        assert_eq!(uploads.len(), 1);
        platform.respond_status(&uploads[0], 503);
        platform.run();
        delays.push(platform.wait_delay());
        platform.advance_to_wake();
    }
    delays
}

#[test]
fn each_delay_is_within_the_full_jitter_bounds_and_the_cap() {
    let policy = Policy::mobile();
    let delays = delays_after_failures(3, 40);
    for (index, delay) in delays.iter().enumerate() {
        let failures = index as u32 + 1;
        let ceiling = policy.backoff_ceiling(failures);
        assert!(
            *delay <= ceiling,
            "failure {failures}: {delay:?} over {ceiling:?}"
        );
        assert!(*delay <= Duration::from_secs(300), "never over the cap");
    }
}

#[test]
fn jitter_spreads_over_the_whole_range() {
    // Many queues, each after its eighth failure (ceiling 64 s): delays must cover the range,
    // not cluster at the ceiling (plain exponential backoff) or at zero.
    let policy = Policy::mobile();
    let ceiling = policy.backoff_ceiling(8).as_millis() as f64;
    let mut samples = Vec::new();
    for seed in 0..200u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        samples.push(policy.retry_delay(8, None, &mut rng).as_millis() as f64 / ceiling);
    }
    let below_quarter = samples.iter().filter(|fraction| **fraction < 0.25).count();
    let above_three_quarters = samples.iter().filter(|fraction| **fraction > 0.75).count();
    assert!(
        below_quarter > 20 && above_three_quarters > 20,
        "{below_quarter} / {above_three_quarters}"
    );
    assert!(
        samples
            .iter()
            .all(|fraction| (0.0..=1.0).contains(fraction))
    );
}

#[test]
fn retry_after_is_honoured_and_capped() {
    let mut platform = Platform::new(Policy::mobile());
    platform.track(2);
    platform.queue.request_flush();
    let uploads = platform.run();
    platform.respond(
        &uploads[0],
        UploadOutcome::Response {
            status: 429,
            retry_after: Some(Duration::from_secs(42)),
            body: vec![],
        },
    );
    platform.run();
    assert_eq!(platform.wait_delay(), Duration::from_secs(42));
    platform.advance(Duration::from_secs(41));
    assert!(platform.run().is_empty(), "not before Retry-After");
    platform.advance(Duration::from_secs(1));
    let retry = platform.run();
    assert_eq!(retry.len(), 1);

    platform.respond(
        &retry[0],
        UploadOutcome::Response {
            status: 503,
            retry_after: Some(Duration::from_secs(3_600)),
            body: vec![],
        },
    );
    platform.run();
    assert_eq!(
        platform.wait_delay(),
        Duration::from_secs(300),
        "capped at 300 s"
    );
}

#[test]
fn events_past_the_give_up_age_are_dropped_when_their_batch_fails_again() {
    let mut platform = Platform::new(Policy::mobile());
    platform.track(3);
    platform.advance(Duration::from_secs(6 * 3600));
    platform.track(2);
    platform.queue.request_flush();
    let mut failures = 0;
    // Fail for a little over 12 hours after the first three were queued.
    while platform.queue.counters().dropped.expired == 0 {
        let uploads = platform.run();
        assert_eq!(uploads.len(), 1);
        platform.respond(
            &uploads[0],
            UploadOutcome::ConnectionFailed("offline".into()),
        );
        platform.run();
        platform.advance_to_wake();
        failures += 1;
        assert!(failures < 500, "the give-up age never applied");
    }
    assert_eq!(
        platform.queue.counters().dropped.expired,
        3,
        "only the old ones"
    );
    assert_eq!(platform.queue.len(), 2);
    assert_eq!(platform.store.len(), 2, "expired records are deleted");
    assert!(platform.events.iter().any(|event| matches!(
        event,
        QueueEvent::Dropped {
            count: 3,
            reason: tributary_core::queue::DropReason::Expired,
            ..
        }
    )));
    platform.assert_counters_add_up();
}

#[test]
fn an_old_event_that_is_delivered_at_its_first_attempt_is_not_dropped() {
    let mut platform = Platform::new(Policy::mobile());
    platform.track(1);
    platform.advance(Duration::from_secs(24 * 3600));
    let uploads = platform.run();
    platform.respond_status(&uploads[0], 200);
    platform.run();
    assert_eq!(platform.queue.counters().delivered, 1);
}

#[test]
fn only_one_probe_is_in_flight_while_recovering() {
    let mut platform = Platform::new(Policy::server());
    platform.track(3_000);
    let uploads = platform.run();
    assert_eq!(uploads.len(), 4, "four in flight when healthy");
    for upload in &uploads {
        platform.respond_status(upload, 500);
    }
    platform.run();
    platform.advance_to_wake();
    let probes = platform.run();
    assert_eq!(probes.len(), 1, "one probe after failures");
    platform.respond_status(&probes[0], 200);
    assert_eq!(platform.run().len(), 4, "full speed once it succeeds");
}
