//! Overload shedding of the ingest (`server.max_pending_bytes`): with the sink held busy, requests
//! beyond the bound are answered `503` with `Retry-After` and an `overloaded` error at once, none
//! of their events is stored, the admitted ones are stored in full once the sink moves, and the
//! freed budget admits the clients' retries. No timing assertion: a shed request must not wait for
//! the held sink, and one that does fails the test after a generous minute instead of hanging it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tower::ServiceExt;
use tributary_backend::ingest::{self, Admission, EventSink, IngestState, WriteKeys};
use tributary_backend::log::{AppendOutcome, IncomingEvent, LogError};
use tributary_backend::ops::metrics::Metrics;
use tributary_backend::privacy::IngestPrivacy;

/// A sink that stores nothing until the test opens its gate, and says when an append arrives.
struct HeldSink {
    gate: Semaphore,
    arrived: mpsc::UnboundedSender<usize>,
    stored: Mutex<Vec<String>>,
}

impl EventSink for HeldSink {
    fn append(
        &self,
        events: Vec<IncomingEvent>,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<AppendOutcome, LogError>> + Send + '_>>
    {
        Box::pin(async move {
            let _ = self.arrived.send(events.len());
            let _pass = self.gate.acquire().await.expect("the gate stays open");
            let appended = events.len();
            self.stored
                .lock()
                .unwrap()
                .extend(events.into_iter().map(|event| event.id));
            Ok(AppendOutcome {
                appended,
                duplicates: 0,
            })
        })
    }
}

fn batch(request: usize) -> Vec<u8> {
    let events: Vec<Value> = (0..20)
        .map(|index| {
            json!({
                "id": format!("req{request}-event{index}"),
                "name": "Order Completed",
                "data": {"n": index, "padding": "x".repeat(100)},
                "anonymous_id": "anon-1",
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "batch": events })).unwrap()
}

fn post(body: Vec<u8>) -> Request<Body> {
    Request::post("/v1/batch")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Bearer test-key")
        .body(Body::from(body))
        .unwrap()
}

async fn answer(response: axum::response::Response) -> (StatusCode, Option<String>, Value) {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|value| value.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, retry_after, serde_json::from_slice(&bytes).unwrap())
}

fn ids(request: usize) -> Vec<String> {
    (0..20)
        .map(|index| format!("req{request}-event{index}"))
        .collect()
}

/// The ingest in front of a [`HeldSink`], with a pending bound of `bound` bytes.
struct HeldIngest {
    sink: Arc<HeldSink>,
    arrivals: mpsc::UnboundedReceiver<usize>,
    metrics: Arc<Metrics>,
    app: axum::Router,
}

fn held_ingest(bound: u64) -> HeldIngest {
    let (arrived, arrivals) = mpsc::unbounded_channel();
    let sink = Arc::new(HeldSink {
        gate: Semaphore::new(0),
        arrived,
        stored: Mutex::new(Vec::new()),
    });
    let metrics = Arc::new(Metrics::new());
    let state = Arc::new(IngestState {
        sink: sink.clone(),
        write_keys: WriteKeys::new(vec!["test-key".into()]),
        rate_limiter: None,
        metrics: metrics.clone(),
        rules: None,
        privacy: IngestPrivacy::default(),
        // Long: a request that waited for its body would be caught by the tests' own timeouts.
        body_timeout: std::time::Duration::from_secs(600),
        admission: Admission::new(bound),
    });
    let app = ingest::router(state, &["*".to_owned()]);
    HeldIngest {
        sink,
        arrivals,
        metrics,
        app,
    }
}

#[tokio::test]
async fn requests_beyond_the_pending_bound_are_shed_whole_and_the_admitted_are_stored() {
    let body_len = batch(0).len();
    // Room for two requests, not three (every body here has the same length).
    let bound = (body_len * 5 / 2) as u64;
    let HeldIngest {
        sink,
        mut arrivals,
        metrics,
        app,
    } = held_ingest(bound);

    // Two requests get in and wait for the held sink.
    let admitted: Vec<_> = (0..2)
        .map(|request| tokio::spawn(app.clone().oneshot(post(batch(request)))))
        .collect();
    for _ in 0..2 {
        assert_eq!(arrivals.recv().await, Some(20));
    }

    // Three more are shed at once, whole.
    for request in 2..5 {
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            app.clone().oneshot(post(batch(request))),
        )
        .await
        .expect("a request beyond the bound waited for the held sink instead of being shed")
        .unwrap();
        let (status, retry_after, body) = answer(response).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(body["error"]["code"], "overloaded", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&bound.to_string()) && message.contains("nothing of this request"),
            "{message}"
        );
    }
    assert!(
        arrivals.try_recv().is_err(),
        "a shed request reached the sink"
    );
    assert!(sink.stored.lock().unwrap().is_empty());

    // The sink moves: both admitted requests are stored in full and answered 200.
    sink.gate.add_permits(1_000);
    for handle in admitted {
        let (status, _, body) = answer(handle.await.unwrap().unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["accepted"], 20, "{body}");
    }
    let mut stored = sink.stored.lock().unwrap().clone();
    stored.sort();
    let mut expected: Vec<String> = ids(0).into_iter().chain(ids(1)).collect();
    expected.sort();
    assert_eq!(stored, expected, "exactly the admitted requests' events");

    // The budget is free again: the shed clients' retries are taken.
    for request in 2..5 {
        let response = app.clone().oneshot(post(batch(request))).await.unwrap();
        let (status, _, body) = answer(response).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(sink.stored.lock().unwrap().len(), 5 * 20);

    let text = metrics.encode();
    assert!(
        text.contains("tributary_ingest_shed_requests_total 3"),
        "{text}"
    );
    assert!(
        text.contains("tributary_http_requests_total{status=\"503\"} 3"),
        "{text}"
    );
}

#[tokio::test]
async fn a_body_declared_over_the_free_budget_is_shed_before_it_is_read() {
    let body_len = batch(0).len();
    let bound = (body_len * 3 / 2) as u64;
    let HeldIngest {
        sink,
        mut arrivals,
        metrics,
        app,
    } = held_ingest(bound);
    let admitted = tokio::spawn(app.clone().oneshot(post(batch(0))));
    assert_eq!(arrivals.recv().await, Some(20));

    // Its head declares a body as large as the first, which does not fit in what is left; the
    // body itself never arrives, so an answer proves it was not waited for.
    let (_sender_kept_open, never_written) = tokio::io::duplex(64);
    let request = Request::post("/v1/batch")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Bearer test-key")
        .header(header::CONTENT_LENGTH, body_len)
        .body(Body::from_stream(tokio_util::io::ReaderStream::new(
            never_written,
        )))
        .unwrap();
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        app.clone().oneshot(request),
    )
    .await
    .expect("the request waited for its body instead of being shed")
    .unwrap();
    let (status, retry_after, body) = answer(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(body["error"]["code"], "overloaded", "{body}");

    // A request whose declared body fits is read and taken as usual.
    let small = serde_json::to_vec(&json!({"batch": [{"id": "small-1", "name": "ping", "data": {}, "anonymous_id": "anon-2"}]})).unwrap();
    assert!((small.len() as u64) < bound - body_len as u64);
    let taken = tokio::spawn(app.clone().oneshot(post(small)));
    assert_eq!(arrivals.recv().await, Some(1));
    sink.gate.add_permits(10);
    assert_eq!(
        answer(admitted.await.unwrap().unwrap()).await.0,
        StatusCode::OK
    );
    let (status, _, body) = answer(taken.await.unwrap().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stored = sink.stored.lock().unwrap().clone();
    assert_eq!(stored.len(), 21, "{stored:?} {body}");
    assert!(stored.contains(&"small-1".to_owned()), "{stored:?}");
    assert!(
        metrics
            .encode()
            .contains("tributary_ingest_shed_requests_total 1")
    );
}
