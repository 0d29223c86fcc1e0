//! Local mode's HTTP server: accepts connections on the listener and serves the router over
//! HTTP/1.1 and HTTP/2, with the client's socket address as [`axum::extract::ConnectInfo`].
//!
//! # Invariants
//! - A connection must send its request head within `header_timeout` (hyper's
//!   `header_read_timeout`, which `axum::serve` leaves off): a client trickling headers
//!   (slowloris) is disconnected instead of holding its connection forever. Bodies have their
//!   own deadline in the ingest (`server.body_timeout`, `408`).
//! - On shutdown the listener closes first; requests in progress finish, idle keep-alive
//!   connections are closed, and [`serve`] returns once every connection has ended.
//! - A failed `accept` (out of file descriptors, a connection reset before it was taken) is
//!   logged and retried after a pause; it never stops the server.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long to pause after a failed `accept`.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` is cancelled, then waits for the connections.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(message = "accept failed", %error);
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = app
            .clone()
            .map_request(move |request: Request<hyper::body::Incoming>| {
                let mut request = request.map(Body::new);
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(message = "connection ended with an error", %error, %peer);
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
