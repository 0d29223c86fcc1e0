//! Operations endpoints of local mode: `GET /healthz`, `GET /metrics` (Prometheus text) and the
//! status page `GET /`.
//!
//! When the server listens on anything but loopback, `/` and `/metrics` require the admin token
//! (from the environment variable `server.admin_token_env`) as `Authorization: Bearer TOKEN`, or
//! as `?token=TOKEN` for a browser opening the status page (the page passes it on to its own
//! requests). Without a token set they answer `401` there.
//!
//! - [`metrics`]: the metrics.
//! - [`status_page`]: the page.

pub mod metrics;
pub mod status_page;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use self::metrics::Metrics;

/// Who may read `/` and `/metrics`.
#[derive(Debug, Clone)]
pub enum AdminAccess {
    /// Anyone (the server listens on loopback only).
    Open,
    /// Only requests with this token.
    Token(String),
    /// Nobody: off loopback without a token configured.
    Closed {
        /// The environment variable to set.
        variable: String,
    },
}

struct OpsState {
    metrics: Arc<Metrics>,
    access: AdminAccess,
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The operations routes.
pub fn router(metrics: Arc<Metrics>, access: AdminAccess) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/", get(status))
        .with_state(Arc::new(OpsState { metrics, access }))
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn metrics_text(
    State(state): State<Arc<OpsState>>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Response {
    if let Some(reason) = denial(&state.access, &headers, query.token.as_deref()) {
        return denied(&reason);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn status(
    State(state): State<Arc<OpsState>>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Response {
    if let Some(reason) = denial(&state.access, &headers, query.token.as_deref()) {
        return denied(&reason);
    }
    Html(status_page::HTML).into_response()
}

/// Why a request may not read `/` or `/metrics`, if it may not.
pub(crate) fn denial(
    access: &AdminAccess,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Option<String> {
    let expected = match access {
        AdminAccess::Open => return None,
        AdminAccess::Token(token) => token,
        AdminAccess::Closed { variable } => {
            return Some(format!(
                "the server listens beyond loopback: set {variable} and send Authorization: Bearer <token>"
            ));
        }
    };
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    match from_header.or(query_token) {
        Some(presented) if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) => None,
        _ => Some("admin token required: Authorization: Bearer <token>".to_owned()),
    }
}

pub(crate) fn denied(message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": "unauthorized", "message": message}});
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn status_of(access: AdminAccess, uri: &str, bearer: Option<&str>) -> StatusCode {
        let app = router(Arc::new(Metrics::new()), access);
        let mut request = Request::builder().uri(uri);
        if let Some(token) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        app.oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn loopback_is_open_and_elsewhere_needs_the_token() {
        assert_eq!(
            status_of(AdminAccess::Open, "/metrics", None).await,
            StatusCode::OK
        );
        let token = || AdminAccess::Token("s3cret".into());
        assert_eq!(
            status_of(token(), "/metrics", None).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status_of(token(), "/metrics", Some("wrong")).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status_of(token(), "/metrics", Some("s3cret")).await,
            StatusCode::OK
        );
        assert_eq!(
            status_of(token(), "/", None).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status_of(token(), "/?token=s3cret", None).await,
            StatusCode::OK
        );
        assert_eq!(
            status_of(token(), "/healthz", None).await,
            StatusCode::OK,
            "health is always open"
        );
        let closed = AdminAccess::Closed {
            variable: "TRIBUTARY_ADMIN_TOKEN".into(),
        };
        assert_eq!(
            status_of(closed, "/metrics", Some("anything")).await,
            StatusCode::UNAUTHORIZED
        );
    }
}
