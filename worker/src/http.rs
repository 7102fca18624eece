//! The worker's only listener (METRICS_LISTEN): `/healthz`, `/readyz`, `/metrics`.
//! The worker has no public API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct Probe {
    ready: Arc<AtomicBool>,
    metrics: Registry,
}

/// The router: liveness, readiness (`ready` is true while Redis answers), and the
/// metrics of `metrics` (the worker's: [`crate::metrics::metrics`]).
pub fn router(ready: Arc<AtomicBool>, metrics: Registry) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render))
        .with_state(Probe { ready, metrics })
}

/// The Prometheus text exposition.
async fn render(State(p): State<Probe>) -> Response {
    match tps_runtime::metrics::render(&p.metrics) {
        Ok(text) => ([(header::CONTENT_TYPE, tps_runtime::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics not rendered");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn readyz(State(p): State<Probe>) -> (StatusCode, &'static str) {
    if p.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Binds `addr` and serves until `shutdown`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let server =
            axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "metrics listener failed");
        }
    });
    Ok((bound, task))
}
