//! HubSpot's custom event occurrences as documented (`tests/data/vendor/hubspot/`):
//! `POST /events/v3/send` (one occurrence) and `POST /events/v3/send/batch` (`{"inputs": […]}`,
//! at most 500), `Authorization: Bearer <token>`, 204 on success. Every answer carries the
//! rate-limit headers; past `requests_per_10s` requests in a rolling 10 s window the answer is
//! 429 with the documented body and headers. An occurrence needs a defined `eventName`,
//! `properties` the definition has (scalar values), one of `email`/`objectId`/`utk`, an RFC
//! 3339 `occurredAt` and a UUID `uuid`; one invalid input refuses the request with the
//! documented `VALIDATION_ERROR` body. A second occurrence with a `uuid` already seen is not
//! stored again.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::{Scripted, serve, vendor_file};

pub const MAX_INPUTS: usize = 500;
pub const WINDOW: Duration = Duration::from_secs(10);

/// One request as received.
#[derive(Clone, Debug)]
pub struct SendRequest {
    pub at: Instant,
    pub path: String,
    pub authorization: String,
    pub content_type: String,
    pub body: Value,
    pub status: u16,
}

impl SendRequest {
    /// The occurrences it carried.
    pub fn occurrences(&self) -> Vec<Value> {
        if self.path.ends_with("/batch") {
            self.body["inputs"].as_array().cloned().unwrap_or_default()
        } else {
            vec![self.body.clone()]
        }
    }
}

struct State_ {
    token: String,
    /// Event definitions: name → its properties.
    definitions: HashMap<String, BTreeSet<String>>,
    requests_per_10s: usize,
    window: VecDeque<Instant>,
    script: VecDeque<Scripted>,
    requests: Vec<SendRequest>,
    /// Stored occurrences by uuid.
    stored: BTreeMap<String, Value>,
}

type Shared = Arc<Mutex<State_>>;

/// A running stand-in.
#[derive(Clone)]
pub struct HubspotApi {
    pub url: String,
    state: Shared,
}

impl HubspotApi {
    /// A portal with this private app token, these event definitions (name → properties) and
    /// this rolling 10-second limit.
    pub async fn start(
        token: &str,
        definitions: &[(&str, &[&str])],
        requests_per_10s: usize,
    ) -> Self {
        let state: Shared = Arc::new(Mutex::new(State_ {
            token: token.to_owned(),
            definitions: definitions
                .iter()
                .map(|(name, properties)| {
                    (
                        (*name).to_owned(),
                        properties.iter().map(|p| (*p).to_owned()).collect(),
                    )
                })
                .collect(),
            requests_per_10s,
            window: VecDeque::new(),
            script: VecDeque::new(),
            requests: Vec::new(),
            stored: BTreeMap::new(),
        }));
        let app = Router::new()
            .route("/events/v3/send", post(send_one))
            .route("/events/v3/send/batch", post(send_batch))
            .with_state(state.clone());
        Self {
            url: serve(app).await,
            state,
        }
    }

    pub fn script(&self, replies: impl IntoIterator<Item = Scripted>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    pub fn requests(&self) -> Vec<SendRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Stored occurrences, one per uuid.
    pub fn stored(&self) -> BTreeMap<String, Value> {
        self.state.lock().unwrap().stored.clone()
    }
}

async fn send_one(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    handle(&state, "/events/v3/send", &headers, &body, false).await
}

async fn send_batch(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    handle(&state, "/events/v3/send/batch", &headers, &body, true).await
}

fn rate_headers(max: usize, remaining: usize) -> [(String, String); 3] {
    [
        (
            "X-HubSpot-RateLimit-Interval-Milliseconds".into(),
            WINDOW.as_millis().to_string(),
        ),
        ("X-HubSpot-RateLimit-Max".into(), max.to_string()),
        (
            "X-HubSpot-RateLimit-Remaining".into(),
            remaining.to_string(),
        ),
    ]
}

fn respond(status: u16, body: Option<&Value>, headers: &[(String, String)]) -> Response {
    let mut response = match body {
        Some(body) => (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response(),
        None => StatusCode::from_u16(status).unwrap().into_response(),
    };
    for (name, value) in headers {
        response.headers_mut().insert(
            axum::http::HeaderName::try_from(name.as_str()).unwrap(),
            value.parse().unwrap(),
        );
    }
    response
}

fn documented(file: &str) -> Value {
    vendor_file(&format!("hubspot/{file}"))
}

fn validation_error(message: String, errors: Vec<(String, String)>) -> Value {
    let mut body = documented("400-validation-error.json")["body"].clone();
    body["message"] = json!(message);
    body["errors"] = json!(
        errors
            .into_iter()
            .map(|(place, message)| json!({"message": message, "in": place}))
            .collect::<Vec<_>>()
    );
    body
}

async fn handle(
    state: &Shared,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
    batch: bool,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let body_json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let request = SendRequest {
        at: Instant::now(),
        path: path.to_owned(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: body_json.clone(),
        status: 0,
    };
    let (status, answer, extra, delay) = decide(state, &request, &body_json, batch);
    {
        let mut state = state.lock().unwrap();
        let mut request = request;
        request.status = status;
        state.requests.push(request);
    }
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    respond(status, answer.as_ref(), &extra)
}

type Decision = (u16, Option<Value>, Vec<(String, String)>, Option<Duration>);

fn decide(state: &Shared, request: &SendRequest, body: &Value, batch: bool) -> Decision {
    let mut state = state.lock().unwrap();
    let now = Instant::now();
    while state
        .window
        .front()
        .is_some_and(|at| now.duration_since(*at) >= WINDOW)
    {
        state.window.pop_front();
    }
    let max = state.requests_per_10s;
    let mut delay = None;
    match state.script.pop_front() {
        Some(Scripted::Status(429)) => {
            let limited = documented("429-rate-limit.json")["ten_secondly"].clone();
            let headers = limited["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(name, value)| (name.clone(), value.as_str().unwrap().to_owned()))
                .collect();
            return (429, Some(limited["body"].clone()), headers, None);
        }
        Some(Scripted::Status(401)) => {
            return (
                401,
                Some(documented("401-unauthorized.json")["body"].clone()),
                vec![],
                None,
            );
        }
        Some(Scripted::Status(status)) => {
            return (
                status,
                Some(
                    json!({"status": "error", "message": format!("internal error {status}"), "category": "INTERNAL_ERROR"}),
                ),
                rate_headers(max, max.saturating_sub(state.window.len())).to_vec(),
                None,
            );
        }
        Some(Scripted::Raw(status, body, headers)) => {
            return (status, serde_json::from_str(&body).ok(), headers, None);
        }
        Some(Scripted::Slow(wait)) => delay = Some(wait),
        None => {}
    }
    if request.authorization != format!("Bearer {}", state.token) {
        return (
            401,
            Some(documented("401-unauthorized.json")["body"].clone()),
            vec![],
            delay,
        );
    }
    if state.window.len() >= max {
        let limited = documented("429-rate-limit.json")["ten_secondly"]["body"].clone();
        return (429, Some(limited), rate_headers(max, 0).to_vec(), delay);
    }
    state.window.push_back(now);
    let headers = rate_headers(max, max - state.window.len()).to_vec();
    let inputs: Vec<Value> = if batch {
        match body.get("inputs").and_then(Value::as_array) {
            Some(inputs) => inputs.clone(),
            None => {
                return (
                    400,
                    Some(validation_error(
                        "Invalid input JSON: missing inputs".into(),
                        vec![],
                    )),
                    headers,
                    delay,
                );
            }
        }
    } else {
        vec![body.clone()]
    };
    if inputs.len() > MAX_INPUTS {
        let message = format!(
            "Batch size {} exceeds the limit of {MAX_INPUTS}",
            inputs.len()
        );
        return (400, Some(validation_error(message, vec![])), headers, delay);
    }
    let mut errors = Vec::new();
    for (index, input) in inputs.iter().enumerate() {
        let place = if batch {
            format!("inputs[{index}]")
        } else {
            String::new()
        };
        for (field, message) in check(&state.definitions, input) {
            errors.push((
                format!("{place}{}{field}", if batch { "." } else { "" }),
                message,
            ));
        }
    }
    if !errors.is_empty() {
        let message = format!("{} validation error(s) in the request", errors.len());
        return (400, Some(validation_error(message, errors)), headers, delay);
    }
    for input in inputs {
        let uuid = input["uuid"].as_str().unwrap_or_default().to_owned();
        state.stored.entry(uuid).or_insert(input);
    }
    (204, None, headers, delay)
}

/// The documented requirements of one occurrence: (field, problem) for each failure.
fn check(definitions: &HashMap<String, BTreeSet<String>>, input: &Value) -> Vec<(String, String)> {
    static FIELDS: std::sync::OnceLock<BTreeSet<String>> = std::sync::OnceLock::new();
    let documented_fields = FIELDS.get_or_init(|| {
        documented("send-request.json")["body"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    });
    let mut problems = Vec::new();
    let Some(object) = input.as_object() else {
        return vec![("".into(), "must be an object".into())];
    };
    for key in object.keys() {
        if !documented_fields.contains(key) {
            problems.push((key.clone(), format!("Unrecognized field \"{key}\"")));
        }
    }
    let name = input["eventName"].as_str().unwrap_or_default();
    let Some(defined) = definitions.get(name) else {
        problems.push((
            "eventName".into(),
            format!("Event {name:?} is not defined in this portal"),
        ));
        return problems;
    };
    match input["properties"].as_object() {
        None => problems.push(("properties".into(), "is required".into())),
        Some(properties) => {
            for (key, value) in properties {
                if !defined.contains(key) {
                    problems.push((
                        format!("properties.{key}"),
                        format!("Property {key:?} does not exist on event {name:?}"),
                    ));
                }
                if value.is_object() || value.is_array() || value.is_null() {
                    problems.push((
                        format!("properties.{key}"),
                        "must be a string, number or boolean".into(),
                    ));
                }
            }
        }
    }
    let identified = ["email", "objectId", "utk"].iter().any(|field| {
        input[*field]
            .as_str()
            .is_some_and(|value| !value.is_empty())
    });
    if !identified {
        problems.push((
            "".into(),
            "One of email, objectId or utk is required".into(),
        ));
    }
    if let Some(occurred) = input.get("occurredAt")
        && time::OffsetDateTime::parse(
            occurred.as_str().unwrap_or_default(),
            &time::format_description::well_known::Rfc3339,
        )
        .is_err()
    {
        problems.push(("occurredAt".into(), "must be an ISO 8601 date-time".into()));
    }
    if let Some(uuid) = input.get("uuid")
        && uuid::Uuid::try_parse(uuid.as_str().unwrap_or_default()).is_err()
    {
        problems.push(("uuid".into(), "must be a UUID".into()));
    }
    problems
}
