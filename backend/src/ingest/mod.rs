//! The ingest HTTP API: one axum router, served by `tributary serve` locally and by
//! `lambda_http` in AWS. `docs/HTTP_API.md` is its reference.
//!
//! - `POST /v1/batch` with `{"batch": [event, …], "sent_at": "…"}`; `POST /v1/event` with one
//!   event. Either takes Tributary envelopes and Segment Spec messages, mixed.
//! - Segment's Tracking API: `POST /v1/track`, `/v1/identify`, `/v1/page`, `/v1/screen`,
//!   `/v1/group`, `/v1/alias` (and analytics.js's `/v1/t`, `/v1/i`, `/v1/p`, `/v1/s`, `/v1/g`,
//!   `/v1/a`, `/v1/b`), mapped by [`segment`].
//! - Auth: `Authorization: Bearer KEY`, HTTP Basic with the key as user, or `"write_key"` in the
//!   body (for `navigator.sendBeacon`, which cannot set headers).
//! - `application/json` or `text/plain` (missing = JSON); `Content-Encoding: gzip`.
//!
//! - [`admission`]: the bound on body bytes waiting to be made durable (`503` beyond it).
//! - [`auth`]: write keys, compared in constant time.
//! - [`body`]: content type, encoding, and reading within the size limit.
//! - [`events`]: per-event validation and normalization (ids, `received_at`, clock skew).
//! - [`errors`]: the error responses.
//! - [`rate_limit`]: the per-key token bucket.
//! - [`sink`]: where accepted events go (the local log, or Kinesis).
//! - [`segment`]: Segment Spec messages to envelopes.
//!
//! The client's address comes from the socket ([`axum::extract::ConnectInfo`]) or, where there
//! is none (behind API Gateway), from a [`ClientAddress`] request extension the adapter sets.
//!
//! # Invariants
//! - `200` is sent only after every accepted event is durable in the sink.
//! - A body must arrive within `body_timeout` (a slowloris sender gets `408` and its connection
//!   is closed), so a slow client holds one small buffer for a bounded time.
//! - Limits are enforced while reading, before parsing: 512 KiB of body after decompression and
//!   500 events per request (`413`, nothing accepted); 32 KiB per event (a `rejected` entry).
//! - An invalid event never costs its valid neighbours: it is rejected by index.
//! - An event of a suppressed user is answered as accepted (a client must not retry it) but
//!   never stored; it is counted in `events_suppressed`.
//! - Bodies past reading are bounded in all by `server.max_pending_bytes` ([`admission`]): a
//!   request beyond it is answered `503` at once and none of its events is stored.

pub mod admission;
pub mod auth;
pub mod body;
pub mod errors;
pub mod events;
pub mod rate_limit;
pub mod segment;
pub mod sink;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use time::OffsetDateTime;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::ops::metrics::{Metrics, StatusLabel};
use crate::privacy::IngestPrivacy;
use crate::routing::RoutingRules;
pub use admission::Admission;
pub use auth::WriteKeys;
use errors::ApiError;
pub use rate_limit::RateLimiter;
use segment::SegmentCall;
pub use sink::EventSink;

/// The most events in one request.
pub const MAX_EVENTS_PER_REQUEST: usize = 500;
/// The most bytes of request body, after decompression.
pub const MAX_BODY_BYTES: usize = 512 * 1024;
/// What a `503` asks clients to wait.
const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What the ingest handlers share.
pub struct IngestState {
    /// Where accepted events go.
    pub sink: Arc<dyn EventSink>,
    /// Keys that may send.
    pub write_keys: WriteKeys,
    /// Per-key limit, when configured.
    pub rate_limiter: Option<RateLimiter>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// For counting events no rule enables (optional: AWS ingest routes later).
    pub rules: Option<Arc<RoutingRules>>,
    /// Client addresses and suppression.
    pub privacy: IngestPrivacy,
    /// How long a body may take to arrive in full; a slower one is `408` (see [`body`]).
    pub body_timeout: Duration,
    /// The bound on body bytes waiting to be made durable (see [`admission`]).
    pub admission: Admission,
}

/// The client's address, for requests that do not come over a socket of this process (an
/// API Gateway event's `sourceIp`); set as a request extension by the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub std::net::IpAddr);

/// The ingest routes, with CORS for `allowed_origins` (`*` = any).
pub fn router(state: Arc<IngestState>, allowed_origins: &[String]) -> Router {
    Router::new()
        .route("/v1/batch", post(post_batch))
        .route("/v1/b", post(post_batch))
        .route("/v1/event", post(post_event))
        .route("/v1/track", post(segment_call::<TRACK>))
        .route("/v1/t", post(segment_call::<TRACK>))
        .route("/v1/identify", post(segment_call::<IDENTIFY>))
        .route("/v1/i", post(segment_call::<IDENTIFY>))
        .route("/v1/page", post(segment_call::<PAGE>))
        .route("/v1/p", post(segment_call::<PAGE>))
        .route("/v1/screen", post(segment_call::<SCREEN>))
        .route("/v1/s", post(segment_call::<SCREEN>))
        .route("/v1/group", post(segment_call::<GROUP>))
        .route("/v1/g", post(segment_call::<GROUP>))
        .route("/v1/alias", post(segment_call::<ALIAS>))
        .route("/v1/a", post(segment_call::<ALIAS>))
        .layer(cors(allowed_origins))
        .with_state(state)
}

fn cors(allowed_origins: &[String]) -> CorsLayer {
    let origins = if allowed_origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            allowed_origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
        ])
        .expose_headers([header::RETRY_AFTER])
        .max_age(Duration::from_secs(86_400))
}

/// The body of a `200`.
#[derive(Debug, Serialize)]
pub struct Accepted {
    /// Events accepted (stored now, or earlier within the dedup window).
    pub accepted: usize,
    /// Events refused, by index into the batch.
    pub rejected: Vec<events::Rejected>,
}

async fn post_batch(State(state): State<Arc<IngestState>>, request: Request) -> Response {
    let response = handle(&state, request, RequestShape::Batch).await;
    finish(&state, response)
}

async fn post_event(State(state): State<Arc<IngestState>>, request: Request) -> Response {
    let response = handle(&state, request, RequestShape::SingleEvent).await;
    finish(&state, response)
}

const TRACK: u8 = 0;
const IDENTIFY: u8 = 1;
const PAGE: u8 = 2;
const SCREEN: u8 = 3;
const GROUP: u8 = 4;
const ALIAS: u8 = 5;

async fn segment_call<const CALL: u8>(
    State(state): State<Arc<IngestState>>,
    request: Request,
) -> Response {
    let call = match CALL {
        TRACK => SegmentCall::Track,
        IDENTIFY => SegmentCall::Identify,
        PAGE => SegmentCall::Page,
        SCREEN => SegmentCall::Screen,
        GROUP => SegmentCall::Group,
        _ => SegmentCall::Alias,
    };
    let response = handle(&state, request, RequestShape::Segment(call)).await;
    finish(&state, response)
}

fn finish(state: &IngestState, response: Result<Accepted, ApiError>) -> Response {
    let response = match response {
        Ok(accepted) => axum::Json(accepted).into_response(),
        Err(error) => error.into_response(),
    };
    state
        .metrics
        .http_requests
        .get_or_create(&StatusLabel {
            status: response.status().as_u16(),
        })
        .inc();
    response
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RequestShape {
    Batch,
    SingleEvent,
    Segment(SegmentCall),
}

/// The address the request came from: the socket's peer, or what the adapter set.
fn peer_address(request: &Request) -> Option<std::net::IpAddr> {
    request
        .extensions()
        .get::<ClientAddress>()
        .map(|address| address.0)
        .or_else(|| {
            request
                .extensions()
                .get::<ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip())
        })
}

async fn handle(
    state: &IngestState,
    request: Request,
    shape: RequestShape,
) -> Result<Accepted, ApiError> {
    let peer = peer_address(&request);
    let (parts, body): (_, Body) = request.into_parts();
    let headers: &HeaderMap = &parts.headers;
    body::check_content_type(headers)?;
    let encoding = body::content_encoding(headers)?;
    let header_key = state.write_keys.from_headers(headers)?;
    let shed = |overloaded: admission::Overloaded| {
        state.metrics.ingest_shed_requests.inc();
        ApiError::overloaded(overloaded.max_pending_bytes, UNAVAILABLE_RETRY_AFTER)
    };
    // A body declared larger than the budget left is shed before it is read: under overload the
    // bodies of shed requests are never buffered (hyper drains what already arrived, or closes).
    // (A body declared over the size limit is refused as too large, not shed.)
    if let Some(declared) = body::declared_length(headers) {
        body::check_declared_length(declared, encoding, MAX_BODY_BYTES)?;
        state.admission.check_room(declared).map_err(shed)?;
    }
    let bytes = tokio::time::timeout(
        state.body_timeout,
        body::read_limited(body, encoding, MAX_BODY_BYTES),
    )
    .await
    .map_err(|_| ApiError::body_timeout(state.body_timeout))??;
    // Held until the sink has answered: the body, and the events parsed from it, count against
    // `max_pending_bytes` until then.
    let _admitted = state.admission.try_admit(bytes.len()).map_err(shed)?;

    let parsed = match shape {
        RequestShape::Batch => events::parse_batch(&bytes)?,
        RequestShape::SingleEvent => events::parse_single(&bytes)?,
        RequestShape::Segment(_) => events::parse_segment_call(&bytes)?,
    };
    let key = match header_key {
        Some(key) => key,
        None => state.write_keys.from_body(parsed.write_key.as_deref())?,
    };
    if parsed.events.len() > MAX_EVENTS_PER_REQUEST {
        return Err(ApiError::too_many_events(
            parsed.events.len(),
            MAX_EVENTS_PER_REQUEST,
        ));
    }
    if let Some(limiter) = &state.rate_limiter {
        limiter
            .take(key, parsed.events.len())
            .map_err(ApiError::rate_limited)?;
    }

    let received_at = crate::clock::now();
    let privacy = &state.privacy;
    let suppressions = privacy.suppressions.current();
    let defaults = events::RequestDefaults {
        sent_at: parsed.sent_at,
        context: parsed.context.as_ref(),
        received_at,
        client_ip: privacy.trusted_proxies.client_ip(peer, headers),
        ip_mode: privacy.ip_mode,
        segment_call: match shape {
            RequestShape::Segment(call) => Some(call),
            _ => None,
        },
        suppressions: &suppressions,
    };
    let checked = events::check_events(&parsed.events, &defaults);
    let event_names: Vec<String> = checked
        .accepted
        .iter()
        .map(|event| event.name.clone())
        .collect();
    let valid = checked.accepted.len() + checked.suppressed;
    let outcome = if checked.accepted.is_empty() {
        Default::default()
    } else {
        state.sink.append(checked.accepted).await.map_err(|error| {
            tracing::error!(message = "ingest cannot store events", %error);
            ApiError::unavailable(&error.to_string(), UNAVAILABLE_RETRY_AFTER)
        })?
    };
    let metrics = &state.metrics;
    metrics.events_accepted.inc_by(outcome.appended as u64);
    metrics
        .events_deduplicated
        .inc_by(outcome.duplicates as u64);
    metrics
        .events_rejected
        .inc_by(checked.rejected.len() as u64);
    metrics.events_suppressed.inc_by(checked.suppressed as u64);
    if let Some(rules) = &state.rules {
        let unrouted = event_names
            .iter()
            .filter(|name| rules.destinations_for(name).is_empty())
            .count();
        metrics.events_unrouted.inc_by(unrouted as u64);
    }
    Ok(Accepted {
        accepted: valid,
        rejected: checked.rejected,
    })
}

/// A request body once parsed: the raw events, and the batch's `sent_at` and `write_key`.
#[derive(Debug)]
pub struct ParsedBody<'a> {
    /// Each event's JSON as received (re-serialized only for `/v1/event` with a `write_key`).
    pub events: Vec<Cow<'a, str>>,
    /// The batch's `sent_at`, the default for events without their own.
    pub sent_at: Option<OffsetDateTime>,
    /// A beacon's key.
    pub write_key: Option<String>,
    /// Segment's batch-level `context` (with `integrations`), under each event's own.
    pub context: Option<serde_json::Map<String, serde_json::Value>>,
}
