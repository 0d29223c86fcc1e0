//! The privacy admin endpoints, behind the admin token (the same rule as `/metrics`: open on
//! loopback, `Authorization: Bearer TOKEN` elsewhere).
//!
//! - `POST /v1/privacy/delete` — `{"user_id": "…"}` and/or `{"anonymous_id": "…"}` (or the
//!   lists `user_ids`, `anonymous_ids`), optional `"suppress": true` and `"reason"`; answers the
//!   audit record, with what each store removed.
//! - `POST /v1/privacy/suppress`, `POST /v1/privacy/unsuppress` — the same subjects and
//!   `reason`.
//! - `GET /v1/privacy/suppressions` — the suppression list.
//! - `GET /v1/privacy/requests` — the audit trail, `{"requests": […]}`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::requests::PrivacyRequests;
use super::{PrivacyError, Subject};
use crate::ops::{AdminAccess, denial, denied};

struct AdminState {
    requests: Arc<PrivacyRequests>,
    access: AdminAccess,
}

/// The privacy routes.
pub fn router(requests: Arc<PrivacyRequests>, access: AdminAccess) -> Router {
    Router::new()
        .route("/v1/privacy/delete", post(delete))
        .route("/v1/privacy/suppress", post(suppress))
        .route("/v1/privacy/unsuppress", post(unsuppress))
        .route("/v1/privacy/suppressions", get(suppressions))
        .route("/v1/privacy/requests", get(history))
        .with_state(Arc::new(AdminState { requests, access }))
}

/// The body of every `POST`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    anonymous_id: Option<String>,
    #[serde(default)]
    user_ids: Vec<String>,
    #[serde(default)]
    anonymous_ids: Vec<String>,
    #[serde(default)]
    suppress: Option<bool>,
    #[serde(default)]
    reason: Option<String>,
}

impl RequestBody {
    fn subjects(&self) -> Vec<Subject> {
        let users = self.user_id.iter().chain(&self.user_ids).cloned();
        let devices = self.anonymous_id.iter().chain(&self.anonymous_ids).cloned();
        users
            .map(Subject::UserId)
            .chain(devices.map(Subject::AnonymousId))
            .collect()
    }
}

enum Call {
    Delete,
    Suppress,
    Unsuppress,
}

async fn delete(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    run(&state, &headers, &body, Call::Delete).await
}

async fn suppress(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    run(&state, &headers, &body, Call::Suppress).await
}

async fn unsuppress(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    run(&state, &headers, &body, Call::Unsuppress).await
}

async fn run(state: &AdminState, headers: &HeaderMap, body: &str, call: Call) -> Response {
    if let Some(reason) = denial(&state.access, headers, None) {
        return denied(&reason);
    }
    let body: RequestBody = match serde_json::from_str(body) {
        Ok(body) => body,
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                &format!("the body is not a privacy request: {error}"),
            );
        }
    };
    let subjects = body.subjects();
    let result = match call {
        Call::Delete => {
            state
                .requests
                .delete(
                    subjects,
                    body.suppress.unwrap_or(false),
                    body.reason,
                    "http",
                )
                .await
        }
        _ if body.suppress.is_some() => Err(PrivacyError::Invalid(
            "\"suppress\" is a setting of /v1/privacy/delete only".into(),
        )),
        Call::Suppress => state.requests.suppress(subjects, body.reason, "http").await,
        Call::Unsuppress => {
            state
                .requests
                .unsuppress(subjects, body.reason, "http")
                .await
        }
    };
    match result {
        Ok(record) => axum::Json(record).into_response(),
        Err(error) => failure(&error),
    }
}

async fn suppressions(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if let Some(reason) = denial(&state.access, &headers, None) {
        return denied(&reason);
    }
    match state.requests.list().await {
        Ok(list) => axum::Json(list).into_response(),
        Err(error) => failure(&error),
    }
}

async fn history(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if let Some(reason) = denial(&state.access, &headers, None) {
        return denied(&reason);
    }
    match state.requests.history() {
        Ok(records) => axum::Json(serde_json::json!({ "requests": records })).into_response(),
        Err(error) => failure(&error),
    }
}

fn failure(error: &PrivacyError) -> Response {
    match error {
        PrivacyError::Invalid(message) => {
            error_response(StatusCode::BAD_REQUEST, "invalid_request", message)
        }
        other => {
            tracing::error!(message = "privacy request failed", error = %other);
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "privacy_storage",
                &other.to_string(),
            )
        }
    }
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, header};
    use tower::ServiceExt;

    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: &str,
    ) -> StatusCode {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        app.clone()
            .oneshot(request.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn off_loopback_every_endpoint_needs_the_admin_token() {
        let folder = tempfile::tempdir().unwrap();
        let requests = Arc::new(PrivacyRequests::new(
            folder.path(),
            Default::default(),
            None,
            std::time::Duration::ZERO,
        ));
        let app = router(requests, AdminAccess::Token("s3cret".into()));
        let body = r#"{"user_id": "u"}"#;
        for (method, uri) in [
            ("POST", "/v1/privacy/delete"),
            ("POST", "/v1/privacy/suppress"),
            ("POST", "/v1/privacy/unsuppress"),
            ("GET", "/v1/privacy/suppressions"),
            ("GET", "/v1/privacy/requests"),
        ] {
            assert_eq!(
                call(&app, method, uri, None, body).await,
                StatusCode::UNAUTHORIZED,
                "{uri}"
            );
            assert_eq!(
                call(&app, method, uri, Some("wrong"), body).await,
                StatusCode::UNAUTHORIZED,
                "{uri}"
            );
            assert_eq!(
                call(&app, method, uri, Some("s3cret"), body).await,
                StatusCode::OK,
                "{uri}"
            );
        }
        assert_eq!(
            requests_made(folder.path()),
            3,
            "only the authorized requests were carried out"
        );
        let closed = router(
            Arc::new(PrivacyRequests::new(
                folder.path(),
                Default::default(),
                None,
                std::time::Duration::ZERO,
            )),
            AdminAccess::Closed {
                variable: "TRIBUTARY_ADMIN_TOKEN".into(),
            },
        );
        assert_eq!(
            call(
                &closed,
                "POST",
                "/v1/privacy/delete",
                Some("anything"),
                body
            )
            .await,
            StatusCode::UNAUTHORIZED
        );
    }

    fn requests_made(folder: &std::path::Path) -> usize {
        crate::privacy::AuditTrail::in_data_dir(folder)
            .read()
            .unwrap()
            .len()
    }
}
