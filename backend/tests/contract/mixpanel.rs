//! Mixpanel's `/import` as documented (`tests/data/vendor/mixpanel/`): Basic auth with the
//! project token (empty password, no `project_id`) or a service account with `project_id`;
//! `strict=1`; a JSON array or NDJSON, optionally gzip; at most 2,000 events and 10 MB
//! uncompressed (413 with the documented body above the size); per-event validation (`event`,
//! `properties.time` in seconds or milliseconds between 1971-01-01 and an hour from now,
//! `$insert_id` of at most 36 letters, digits and `-`, no placeholder `distinct_id`, at most
//! 1 MB) answered by `400` with `failed_records` while the valid events are imported; the
//! project keeps one copy per `$insert_id` (Mixpanel deduplicates).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde_json::{Value, json};

use super::{Scripted, serve, vendor_file};

/// Who may import.
#[derive(Clone, Debug)]
pub enum Account {
    /// The project token.
    Token(String),
    /// A service account for a project.
    ServiceAccount {
        username: String,
        secret: String,
        project_id: String,
    },
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct ImportRequest {
    pub at: Instant,
    pub path: String,
    pub query: HashMap<String, String>,
    pub authorization: String,
    pub content_type: String,
    pub content_encoding: String,
    /// Bytes of the body as sent, and uncompressed.
    pub sent_bytes: usize,
    pub uncompressed_bytes: usize,
    /// The events (empty when the body did not parse).
    pub events: Vec<Value>,
    pub status: u16,
}

#[derive(Default)]
struct State_ {
    account: Option<Account>,
    max_request_bytes: usize,
    script: VecDeque<Scripted>,
    requests: Vec<ImportRequest>,
    /// The project: imported events by `$insert_id`.
    imported: BTreeMap<String, Value>,
    import_count: usize,
}

type Shared = Arc<Mutex<State_>>;

/// A running stand-in.
#[derive(Clone)]
pub struct MixpanelApi {
    pub url: String,
    state: Shared,
}

pub const MAX_EVENTS: usize = 2_000;
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

impl MixpanelApi {
    pub async fn start(account: Account) -> Self {
        let state: Shared = Arc::new(Mutex::new(State_ {
            account: Some(account),
            max_request_bytes: MAX_REQUEST_BYTES,
            ..State_::default()
        }));
        let app = Router::new()
            .route("/import", post(import))
            .with_state(state.clone());
        Self {
            url: serve(app).await,
            state,
        }
    }

    /// Answers the next requests with these, in order, before behaving normally again.
    pub fn script(&self, replies: impl IntoIterator<Item = Scripted>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    /// A lower size limit (the 413 path without sending 10 MB).
    pub fn set_max_request_bytes(&self, bytes: usize) {
        self.state.lock().unwrap().max_request_bytes = bytes;
    }

    pub fn requests(&self) -> Vec<ImportRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Events in the project, one per `$insert_id`.
    pub fn imported(&self) -> BTreeMap<String, Value> {
        self.state.lock().unwrap().imported.clone()
    }

    /// Events imported, counting duplicates Mixpanel dropped.
    pub fn import_count(&self) -> usize {
        self.state.lock().unwrap().import_count
    }
}

fn documented(file: &str) -> (u16, Value) {
    let example = vendor_file(&format!("mixpanel/{file}"));
    (
        u16::try_from(example["status"].as_u64().unwrap()).unwrap(),
        example["body"].clone(),
    )
}

fn answer(status: u16, body: &Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn scripted_answer(status: u16) -> Response {
    let file = match status {
        401 => Some("401-unauthorized.json"),
        413 => Some("413-payload-too-large.json"),
        429 => Some("429-rate-limit.json"),
        _ => None,
    };
    match file {
        Some(file) => {
            let (status, body) = documented(file);
            answer(status, &body)
        }
        // 5xx: Mixpanel documents no body; a load balancer's page is typical.
        None => (
            StatusCode::from_u16(status).unwrap(),
            format!("<html><body>{status} upstream unavailable</body></html>"),
        )
            .into_response(),
    }
}

async fn import(
    State(state): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut request = ImportRequest {
        at: Instant::now(),
        path: "/import".into(),
        query: query.clone(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        content_encoding: header("content-encoding"),
        sent_bytes: body.len(),
        uncompressed_bytes: 0,
        events: Vec::new(),
        status: 0,
    };
    let raw = if request.content_encoding == "gzip" {
        let mut decoded = Vec::new();
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut decoded)
            .is_err()
        {
            return record(
                &state,
                request,
                400,
                json!({"code": 400, "error": "invalid gzip body", "status": "Bad Request"}),
            );
        }
        decoded
    } else {
        body.to_vec()
    };
    request.uncompressed_bytes = raw.len();
    request.events = parse_events(&raw, &request.content_type).unwrap_or_default();

    let scripted = state.lock().unwrap().script.pop_front();
    match scripted {
        Some(Scripted::Status(status)) => {
            request.status = status;
            state.lock().unwrap().requests.push(request);
            return scripted_answer(status);
        }
        Some(Scripted::Raw(status, body, headers)) => {
            request.status = status;
            state.lock().unwrap().requests.push(request);
            let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
            for (name, value) in headers {
                response.headers_mut().insert(
                    axum::http::HeaderName::try_from(name).unwrap(),
                    value.parse().unwrap(),
                );
            }
            return response;
        }
        Some(Scripted::Slow(delay)) => {
            let (status, body) = process(&state, &mut request, &query, &raw);
            let response = record(&state, request, status, body);
            tokio::time::sleep(delay).await;
            return response;
        }
        None => {}
    }
    let (status, body) = process(&state, &mut request, &query, &raw);
    record(&state, request, status, body)
}

fn record(state: &Shared, mut request: ImportRequest, status: u16, body: Value) -> Response {
    request.status = status;
    state.lock().unwrap().requests.push(request);
    answer(status, &body)
}

fn parse_events(raw: &[u8], content_type: &str) -> Option<Vec<Value>> {
    if content_type.starts_with("application/x-ndjson") {
        std::str::from_utf8(raw)
            .ok()?
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).ok())
            .collect()
    } else {
        match serde_json::from_slice(raw).ok()? {
            Value::Array(events) => Some(events),
            single @ Value::Object(_) => Some(vec![single]),
            _ => None,
        }
    }
}

/// The documented behaviour of one request: auth, limits, validation, import.
fn process(
    state: &Shared,
    request: &mut ImportRequest,
    query: &HashMap<String, String>,
    raw: &[u8],
) -> (u16, Value) {
    let (account, max_bytes) = {
        let state = state.lock().unwrap();
        (state.account.clone().unwrap(), state.max_request_bytes)
    };
    if !authorized(&account, &request.authorization, query.get("project_id")) {
        return documented("401-unauthorized.json");
    }
    if raw.len() > max_bytes {
        let (status, mut body) = documented("413-payload-too-large.json");
        body["error"] = json!(format!("request exceeds max limit of {max_bytes} bytes"));
        return (status, body);
    }
    let Some(events) = parse_events(raw, &request.content_type) else {
        return (
            400,
            json!({"code": 400, "error": "unable to parse the request body as JSON", "status": "Bad Request"}),
        );
    };
    if events.len() > MAX_EVENTS {
        return (
            400,
            json!({"code": 400, "error": format!("too many events: {} (at most {MAX_EVENTS})", events.len()), "status": "Bad Request"}),
        );
    }
    let strict = query.get("strict").map(String::as_str) == Some("1");
    let mut failed = Vec::new();
    let mut imported = 0;
    for (index, event) in events.iter().enumerate() {
        match validate(event) {
            Ok(insert_id) => {
                imported += 1;
                let mut state = state.lock().unwrap();
                state.import_count += 1;
                state
                    .imported
                    .entry(insert_id)
                    .or_insert_with(|| event.clone());
            }
            Err((field, message)) => failed.push(json!({
                "index": index,
                "insert_id": event["properties"]["$insert_id"].as_str().unwrap_or_default(),
                "field": field,
                "message": message,
            })),
        }
    }
    if failed.is_empty() || !strict {
        return (
            200,
            json!({"code": 200, "num_records_imported": imported, "status": "OK"}),
        );
    }
    let (status, mut body) = documented("400-partial-success.json");
    body["num_records_imported"] = json!(imported);
    body["failed_records"] = json!(failed);
    (status, body)
}

fn authorized(account: &Account, authorization: &str, project_id: Option<&String>) -> bool {
    let Some(encoded) = authorization.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return false;
    };
    let Ok(pair) = String::from_utf8(decoded) else {
        return false;
    };
    let Some((user, password)) = pair.split_once(':') else {
        return false;
    };
    match account {
        Account::Token(token) => project_id.is_none() && user == token && password.is_empty(),
        Account::ServiceAccount {
            username,
            secret,
            project_id: expected,
        } => project_id == Some(expected) && user == username && password == secret,
    }
}

/// The documented checks of one event; the `$insert_id` when it passes.
fn validate(event: &Value) -> Result<String, (String, String)> {
    let invalid =
        |field: &str, why: &str| Err((field.to_owned(), format!("'{field}' is invalid: {why}")));
    if event.to_string().len() > MAX_EVENT_BYTES {
        return invalid("event", "event exceeds 1MB");
    }
    if event["event"].as_str().is_none_or(str::is_empty) {
        return invalid("event", "must be a non-empty string");
    }
    let properties = &event["properties"];
    if !properties.is_object() {
        return invalid("properties", "must be an object");
    }
    // Seconds or milliseconds; between 1971-01-01 and an hour from now.
    let Some(time) = properties["time"].as_f64() else {
        return invalid(
            "properties.time",
            "must be specified as seconds since epoch",
        );
    };
    let seconds = if time > 1e11 { time / 1000.0 } else { time };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    if !(31_536_000.0..=now + 3_600.0).contains(&seconds) {
        // The documented message for a time Mixpanel cannot use.
        return invalid(
            "properties.time",
            "must be specified as seconds since epoch",
        );
    }
    let insert_id = properties["$insert_id"].as_str().unwrap_or_default();
    if insert_id.is_empty()
        || insert_id.len() > 36
        || !insert_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return invalid(
            "properties.$insert_id",
            "must be at most 36 alphanumeric characters or dashes",
        );
    }
    static PLACEHOLDERS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let placeholders = PLACEHOLDERS.get_or_init(|| {
        vendor_file("mixpanel/400-partial-success.json")["validation"]["invalid_distinct_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|value| value.as_str().unwrap().to_owned())
            .collect()
    });
    let distinct_id = properties["distinct_id"].as_str().unwrap_or_default();
    if placeholders
        .iter()
        .any(|placeholder| placeholder.eq_ignore_ascii_case(distinct_id))
    {
        return invalid(
            "properties.distinct_id",
            "placeholder value is not a valid distinct_id",
        );
    }
    Ok(insert_id.to_owned())
}

/// A stand-in that answers every request after `delay` (slow-response tests).
pub fn slow(delay: Duration) -> Scripted {
    Scripted::Slow(delay)
}
