//! Batches never hold more than 500 events or 512 KiB, and deliver every event once, in order.

mod common;

use common::{Platform, batch, names};
use tributary_core::queue::BODY_RESERVE_BYTES;
use tributary_core::{Envelope, Policy};

#[test]
fn batches_stay_within_500_events_and_512_kib_whatever_the_event_sizes() {
    let mut rng = fastrand::Rng::with_seed(11);
    let mut policy = Policy::server();
    policy.capacity_events = 100_000;
    policy.capacity_bytes = 1 << 30;
    let mut platform = Platform::new(policy);
    // Small events (many per batch) and large ones up to the 32 KiB event limit.
    for index in 0..3_000 {
        let pad = if rng.u8(..) < 40 {
            rng.usize(5_000..32_000)
        } else {
            rng.usize(0..200)
        };
        platform.track_sized(&format!("e-{index}"), pad);
    }
    platform.queue.request_flush();

    let mut delivered = Vec::new();
    let mut largest_body = 0;
    loop {
        let uploads = platform.run();
        if uploads.is_empty() {
            break;
        }
        for upload in uploads {
            assert!(upload.event_count <= 500, "{} events", upload.event_count);
            assert!(
                upload.body.len() <= 512 * 1024 - BODY_RESERVE_BYTES,
                "{} bytes",
                upload.body.len()
            );
            largest_body = largest_body.max(upload.body.len());
            delivered.extend(names(&upload));
            platform.respond_status(&upload, 200);
        }
    }
    let expected: Vec<String> = (0..3_000).map(|index| format!("e-{index}")).collect();
    assert_eq!(delivered, expected, "every event once, in order");
    assert!(
        largest_body > 400 * 1024,
        "batches are filled, not tiny: {largest_body}"
    );
    platform.assert_counters_add_up();
}

#[test]
fn a_batch_of_small_events_stops_at_500() {
    let mut platform = Platform::new(Policy::server());
    platform.track(1_200);
    let uploads = platform.run();
    let sizes: Vec<usize> = uploads.iter().map(|upload| upload.event_count).collect();
    assert_eq!(sizes, [500, 500, 200]);
}

#[test]
fn events_get_ids_and_timestamps_and_keep_their_own() {
    let mut platform = Platform::new(Policy::mobile());
    let id = platform
        .queue
        .enqueue(Envelope::new("a", Default::default()), platform.now)
        .unwrap();
    let mut own = Envelope::new("b", Default::default());
    own.id = Some("my-id".into());
    own.timestamp = Some(time::macros::datetime!(2026-01-01 0:00 UTC));
    platform.queue.enqueue(own, platform.now).unwrap();
    platform.queue.request_flush();
    let uploads = platform.run();
    let events = batch(&uploads[0]);
    assert_eq!(events[0]["id"], id.as_str());
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    assert_eq!(events[0]["timestamp"], "2026-11-27T10:00:00Z");
    assert_eq!(events[1]["id"], "my-id");
    assert_eq!(events[1]["timestamp"], "2026-01-01T00:00:00Z");
}
