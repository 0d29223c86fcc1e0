//! Local mode's HTTP server: accepts connections on the listener and serves the router over
//! HTTP/1.1 and HTTP/2, with the client's socket address as [`axum::extract::ConnectInfo`].
//!
//! # Invariants
//! - A connection must send its request head within `header_timeout` (hyper's
//!   `header_read_timeout`, which `axum::serve` leaves off): a client trickling headers
//!   (slowloris) is disconnected instead of holding its connection forever. Bodies have their
//!   own deadline in the ingest (`server.body_timeout`, `408`).
//! - At most `max_connections` connections are served at once: at the cap the server stops
//!   accepting, so further clients wait in the kernel's listen queue (and beyond it their connects
//!   time out) until a connection ends. Each connection's buffers and the body it is receiving
//!   are thus bounded in number, however many clients connect.
//! - On shutdown the listener closes first; requests in progress finish, idle keep-alive
//!   connections are closed, and [`serve`] returns once every connection has ended.
//! - A failed `accept` (out of file descriptors, a connection reset before it was taken) is
//!   logged and retried after a pause; it never stops the server.

use std::net::SocketAddr;
use std::sync::Arc;
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
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long to pause after a failed `accept`.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// `server.max_connections` when the configuration does not say.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The largest `server.max_connections` accepted (a semaphore's limit is far above; this keeps
/// the setting within what a process's file descriptors can hold).
pub const MAX_MAX_CONNECTIONS: usize = 1 << 20;

/// Per-connection limits of the server.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long a connection may take to send a request's head.
    pub header_timeout: Duration,
    /// The most connections served at once.
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then waits for the connections.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let connection_slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        // A slot first: at the cap, nothing is accepted until a connection ends.
        let slot = tokio::select! {
            () = shutdown.cancelled() => break,
            slot = connection_slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
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
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
