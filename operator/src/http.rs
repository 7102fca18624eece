//! The operator's own HTTP endpoints: `/metrics`, `/healthz` and `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::Registry;

/// What the endpoints read.
#[derive(Clone)]
pub struct Health {
    /// The metrics `/metrics` renders (the operator's: [`crate::metrics::metrics`]).
    pub metrics: Registry,
    /// Set once the CRD was found and the controller (or the leader wait) started.
    pub ready: Arc<AtomicBool>,
}

/// The router of the operator's endpoints.
pub fn router(health: Health) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn readyz(State(h): State<Health>) -> (StatusCode, &'static str) {
    if h.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

/// The Prometheus text exposition.
async fn render(State(h): State<Health>) -> Response {
    match tps_runtime::metrics::render(&h.metrics) {
        Ok(text) => ([(header::CONTENT_TYPE, tps_runtime::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics not rendered");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(app: &Router, path: &str) -> (StatusCode, String, Option<String>) {
        let response = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let content_type =
            response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned(), content_type)
    }

    #[tokio::test]
    async fn health_readiness_and_metrics_are_served() {
        // A catalogue of its own, so the count is this test's whatever else runs in the process.
        let metrics = crate::metrics::OperatorMetrics::new();
        metrics.reconciles.inc_by(3);
        metrics.reconcile_errors.with_label_values(&["kube"]).inc();
        metrics.reconcile_duration.observe(0.2);
        let ready = Arc::new(AtomicBool::new(false));
        let app = router(Health { metrics: metrics.registry().clone(), ready: ready.clone() });
        assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
        assert_eq!(get(&app, "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
        ready.store(true, Ordering::Relaxed);
        assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);
        let (status, text, content_type) = get(&app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some("text/plain; version=0.0.4"));
        for line in [
            "# HELP tps_operator_reconciles_total Reconciles started.",
            "# TYPE tps_operator_reconciles_total counter",
            "tps_operator_reconciles_total 3",
            "# TYPE tps_operator_reconcile_errors_total counter",
            "tps_operator_reconcile_errors_total{error=\"kube\"} 1",
            "# HELP tps_operator_reconcile_duration_seconds Time spent in one reconcile.",
            "# TYPE tps_operator_reconcile_duration_seconds histogram",
            "tps_operator_reconcile_duration_seconds_bucket{le=\"0.1\"} 0",
            "tps_operator_reconcile_duration_seconds_bucket{le=\"0.25\"} 1",
            "tps_operator_reconcile_duration_seconds_bucket{le=\"30\"} 1",
            "tps_operator_reconcile_duration_seconds_bucket{le=\"+Inf\"} 1",
            "tps_operator_reconcile_duration_seconds_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
        }
    }
}
