//! `WebQueue` in headless Chromium (wasm-bindgen-test): the queue the TypeScript client drives,
//! with time driven by the test (the `now` every method takes is the injectable clock).

#![cfg(target_arch = "wasm32")]

use tributary_web::WebQueue;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const IDLE: u32 = 0;
const WAIT: u32 = 1;
const UPLOAD: u32 = 2;
const PERSIST: u32 = 3;
const DELETE: u32 = 4;
const SAVE_RETRY_STATE: u32 = 5;

const T0: f64 = 1_795_000_000_000.0;

fn event(id: &str, name: &str) -> String {
    format!(
        r#"{{"id":"{id}","name":"{name}","data":{{"n":1}},"timestamp":"2026-11-18T11:06:40.000Z"}}"#
    )
}

fn queue(flush_at: u32) -> WebQueue {
    WebQueue::new(0, 0, flush_at, 0, 7.0)
}

#[wasm_bindgen_test]
fn stores_then_uploads_then_deletes_after_a_confirmed_delivery() {
    let mut queue = queue(2);
    assert!(queue.enqueue("login", event("a", "login"), T0).is_none());
    assert_eq!(queue.poll(T0), PERSIST);
    assert_eq!(queue.persist_count(), 1);
    assert_eq!(queue.persist_seq(0), 1.0);
    assert_eq!(queue.persist_enqueued_at(0), T0);
    assert_eq!(queue.persist_payload(0), event("a", "login"));
    // One event waits for the flush interval (10 s by the browser policy).
    assert_eq!(queue.poll(T0), WAIT);
    assert_eq!(queue.wait_until(), T0 + 10_000.0);

    assert!(
        queue
            .enqueue("search", event("b", "search"), T0 + 1.0)
            .is_none()
    );
    assert_eq!(queue.poll(T0 + 1.0), PERSIST);
    assert_eq!(queue.poll(T0 + 1.0), UPLOAD);
    assert_eq!(queue.upload_count(), 2);
    let body = String::from_utf8(queue.upload_body()).unwrap();
    assert_eq!(
        body,
        format!(
            r#"{{"batch":[{},{}],"sent_at":"2026-11-18T11:06:40.001Z"}}"#,
            event("a", "login"),
            event("b", "search")
        )
    );
    let id = queue.upload_id();
    assert_eq!(queue.poll(T0 + 1.0), IDLE, "nothing else until the answer");

    queue.completed_accepted(id, vec![1], "name: bad".into(), T0 + 2.0);
    assert_eq!(queue.poll(T0 + 2.0), DELETE);
    assert_eq!(queue.delete_seqs(), vec![1.0, 2.0]);
    assert_eq!(queue.poll(T0 + 2.0), IDLE);
    // [enqueued, restored, delivered, dropped, evicted, retried, uploads, queued, queued_bytes]
    assert_eq!(
        queue.counters(),
        vec![2.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    );
    assert_eq!(
        queue.notices(),
        "dropped 1 rejected: name: bad\ndelivered 1 \n",
        "the rejected event is a counted drop"
    );
}

#[wasm_bindgen_test]
fn refuses_a_bad_name_and_counts_the_drop() {
    let mut queue = queue(1);
    let error = queue.enqueue("", event("a", ""), T0).unwrap();
    assert_eq!(error, "name: must not be empty");
    let error = queue.enqueue("$bogus", event("a", "$bogus"), T0).unwrap();
    assert!(error.starts_with("name: "), "{error}");
    let huge = format!(r#"{{"name":"x","data":{{"s":"{}"}}}}"#, "x".repeat(40_000));
    assert!(queue.enqueue("x", huge, T0).unwrap().starts_with("event: "));
    assert_eq!(queue.poll(T0), IDLE);
    assert_eq!(queue.counters()[3], 3.0);
}

#[wasm_bindgen_test]
fn backs_off_after_a_server_error_and_saves_the_retry_state() {
    let mut queue = queue(1);
    queue.enqueue("login", event("a", "login"), T0);
    assert_eq!(queue.poll(T0), PERSIST);
    assert_eq!(queue.poll(T0), UPLOAD);
    let id = queue.upload_id();
    queue.completed_status(id, 503, 2_000.0, T0);
    assert_eq!(queue.poll(T0), SAVE_RETRY_STATE);
    assert_eq!(queue.retry_failures(), 1);
    assert_eq!(
        queue.retry_not_before(),
        T0 + 2_000.0,
        "Retry-After honoured"
    );
    assert!(!queue.retry_paused());
    assert_eq!(queue.poll(T0), WAIT);
    assert_eq!(queue.wait_until(), T0 + 2_000.0);
    assert_eq!(queue.poll(T0 + 2_000.0), UPLOAD, "the same event again");
    assert_eq!(queue.upload_count(), 1);

    // A network failure backs off with full jitter, never beyond the first ceiling (0.5 s × 2).
    queue.completed_failed(queue.upload_id(), "offline".into(), T0 + 2_000.0);
    assert_eq!(queue.poll(T0 + 2_000.0), SAVE_RETRY_STATE);
    assert_eq!(queue.retry_failures(), 2);
    assert!(queue.retry_not_before() <= T0 + 3_000.0);
    assert!(queue.notices().contains("retry 1 offline"));
}

#[wasm_bindgen_test]
fn pauses_on_401_without_dropping() {
    let mut queue = queue(1);
    queue.enqueue("login", event("a", "login"), T0);
    queue.poll(T0);
    assert_eq!(queue.poll(T0), UPLOAD);
    queue.completed_status(queue.upload_id(), 401, f64::NAN, T0);
    assert_eq!(queue.poll(T0), SAVE_RETRY_STATE);
    assert!(queue.retry_paused());
    assert_eq!(queue.poll(T0), WAIT);
    assert_eq!(queue.wait_until(), T0 + 300_000.0);
    assert_eq!(queue.counters()[7], 1.0, "still queued");
}

#[wasm_bindgen_test]
fn restores_stored_records_in_order_with_their_retry_state() {
    let mut queue = queue(1);
    queue.restore_record(7.0, T0, event("b", "b"));
    queue.restore_record(3.0, T0, event("a", "a"));
    queue.finish_restore(0, 2, T0 + 5_000.0, false);
    assert_eq!(queue.poll(T0), WAIT, "the saved backoff holds");
    assert_eq!(queue.wait_until(), T0 + 5_000.0);
    assert_eq!(queue.poll(T0 + 5_000.0), UPLOAD);
    let body = String::from_utf8(queue.upload_body()).unwrap();
    assert!(body.find(r#""id":"a""#).unwrap() < body.find(r#""id":"b""#).unwrap());
    // New events continue after the highest stored sequence number.
    queue.enqueue("c", event("c", "c"), T0 + 5_000.0);
    assert_eq!(queue.poll(T0 + 5_000.0), PERSIST);
    assert_eq!(queue.persist_seq(0), 8.0);
}

#[wasm_bindgen_test]
fn evicts_the_oldest_beyond_capacity_and_counts_them() {
    let mut queue = WebQueue::new(3, 0, 100, 0, 1.0);
    for index in 0..5 {
        let id = format!("e{index}");
        queue.enqueue("e", event(&id, "e"), T0);
    }
    assert_eq!(queue.poll(T0), PERSIST);
    assert_eq!(queue.persist_count(), 3, "two never reach storage");
    assert_eq!(queue.persist_payload(0), event("e2", "e"));
    assert_eq!(queue.counters()[4], 2.0);
    assert!(queue.notices().contains("evicted"));
}

#[wasm_bindgen_test]
fn a_beacon_takes_the_oldest_events_within_its_byte_budget() {
    let mut queue = queue(100);
    let payload_bytes = event("00", "e").len();
    for index in 0..10 {
        queue.enqueue("e", event(&format!("{index:02}"), "e"), T0);
    }
    assert_eq!(queue.poll(T0), PERSIST);
    assert!(
        !queue.start_beacon(100, T0),
        "not even one event fits 100 bytes"
    );
    // Room for three events: the body's fixed part, the reserve for the write key, separators.
    let budget = 512 + 50 + 3 * (payload_bytes + 1);
    assert!(queue.start_beacon(budget as u32, T0));
    assert_eq!(queue.upload_count(), 3);
    let body = queue.upload_body();
    assert!(body.len() + 512 <= budget);
    assert!(String::from_utf8(body).unwrap().contains(r#""id":"00""#));
    queue.completed_accepted(queue.upload_id(), Vec::new(), String::new(), T0);
    assert_eq!(queue.poll(T0), DELETE);
    assert_eq!(queue.delete_seqs(), vec![1.0, 2.0, 3.0]);
    assert_eq!(queue.counters()[7], 7.0);
}
