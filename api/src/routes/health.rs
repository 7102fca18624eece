//! `/healthz` (liveness), `/readyz` (NATS, Postgres and Redis reachable) and `/metrics`.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// Bound on each readiness probe, so `/readyz` answers even when a dependency hangs.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// The probe and metrics routes: never guarded, so they answer whatever the load.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The metrics route alone, for the METRICS_LISTEN listener.
pub fn metrics_router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics)).route("/healthz", get(healthz))
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "The process serves", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Each dependency's reachability.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: &'static str,
    /// NATS reachable.
    pub nats: bool,
    /// Postgres reachable.
    pub postgres: bool,
    /// Redis reachable.
    pub redis: bool,
}

/// Readiness: 200 when NATS, Postgres and Redis all answer, 503 otherwise.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, body = Readiness), (status = 503, body = Readiness, description = "A dependency is unreachable")
))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let nats = async {
        // A flush is a PING/PONG round trip with the server.
        matches!(tokio::time::timeout(PROBE_TIMEOUT, state.nats.flush()).await, Ok(Ok(())))
    };
    let postgres = async {
        let query = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.db);
        matches!(tokio::time::timeout(PROBE_TIMEOUT, query).await, Ok(Ok(1)))
    };
    let redis = async { state.redis.ping().await.is_ok() };
    let (nats, postgres, redis) = tokio::join!(nats, postgres, redis);
    let ready = nats && postgres && redis;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = Readiness { status: if ready { "ready" } else { "unavailable" }, nats, postgres, redis };
    (status, axum::Json(body)).into_response()
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    match tps_runtime::metrics::render(state.metrics.registry()) {
        Ok(text) => ([(header::CONTENT_TYPE, tps_runtime::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics not rendered");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
