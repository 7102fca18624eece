//! The accept loop: hyper's HTTP/1 server with a header-read deadline, serving the router.
//!
//! `axum::serve` runs hyper without a timer, so a client that sends half a request
//! head holds its connection for ever (a slowloris). Here every connection gets
//! hyper's `header_read_timeout`: the head of each request must be complete within
//! `API_HEADER_TIMEOUT_MS` of the moment the server starts waiting for it. hyper
//! starts that timer as soon as a connection is idle, so the same deadline is the
//! keep-alive idle timeout: a kept-alive connection that sends nothing for that long
//! is closed. The body has its own deadline, enforced by `crate::protect::guard`
//! before a request may take an in-flight slot.
//!
//! HTTP/1.1 only (with upgrades, for the WebSocket of `/v1/events`): cleartext
//! HTTP/2 would bypass the header deadline, and ingresses speak HTTP/1.1 to pods.
//! Shutdown stops accepting, asks every connection to finish its current response
//! and waits for them.

use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::telemetry::metrics;

/// How connections are served: one HTTP/1 builder, cloned per connection.
#[derive(Clone)]
pub struct Http {
    builder: hyper::server::conn::http1::Builder,
}

impl Http {
    /// A server whose request heads must arrive within `header_timeout` (`None`: no
    /// deadline), keeping connections alive between requests when `keep_alive`.
    pub fn new(header_timeout: Option<Duration>, keep_alive: bool) -> Self {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(keep_alive);
        Self { builder }
    }
}

/// Serves `app` on `listener` until `shutdown`, then drains the open connections.
pub async fn serve(listener: TcpListener, app: Router, http: Http, shutdown: impl Future<Output = ()>) {
    let (stop, stopping) = tokio::sync::watch::channel(());
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = http.builder.clone();
        let mut stopping = stopping.clone();
        tracker.spawn(async move {
            let _open = Open::count();
            let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
                // The peer address feeds the per-IP rate limit.
                request.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(request)
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
            tokio::pin!(conn);
            let served = tokio::select! {
                served = conn.as_mut() => served,
                _ = stopping.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = served {
                closed_on_error(&e);
            }
        });
    }
    drop(listener);
    let _ = stop.send(());
    tracker.close();
    tracker.wait().await;
}

/// Counts the open HTTP connections in `tps_api_open_connections` while alive (an upgraded
/// WebSocket leaves the count: `tps_ws_clients` has it).
struct Open;

impl Open {
    fn count() -> Self {
        metrics().open_connections.inc();
        Self
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics().open_connections.dec();
    }
}

fn closed_on_error(e: &hyper::Error) {
    let why = if e.is_timeout() {
        // The request head did not arrive in time (or the connection sat idle too long).
        "header_timeout"
    } else if e.is_parse() || e.is_parse_too_large() {
        "bad_request"
    } else {
        "io"
    };
    metrics().connections_closed.get(why).inc();
    tracing::debug!(error = %e, why, "connection closed");
}

/// As `axum::serve`: resets are the peer's business; anything else (EMFILE) waits a second.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
