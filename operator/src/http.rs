//! The operator's own HTTP endpoints: `/metrics`, `/healthz` and `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

/// What the endpoints read.
#[derive(Clone)]
pub struct Health {
    /// Renders the Prometheus text.
    pub metrics: PrometheusHandle,
    /// Set once the CRD was found and the controller (or the leader wait) started.
    pub ready: Arc<AtomicBool>,
}

/// The router of the operator's endpoints.
pub fn router(health: Health) -> Router {
    Router::new()
        .route("/metrics", get(|State(h): State<Health>| async move { h.metrics.render() }))
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

/// Describes the operator's metrics once, so `/metrics` documents them.
pub fn describe_metrics() {
    metrics::describe_counter!("tps_operator_reconciles_total", "Reconciles started.");
    metrics::describe_counter!("tps_operator_reconcile_errors_total", "Reconciles failed, by error kind.");
    metrics::describe_histogram!("tps_operator_reconcile_duration_seconds", "Time spent in one reconcile.");
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(app: &Router, path: &str) -> (StatusCode, String) {
        let response = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn health_readiness_and_metrics_are_served() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("tps_operator_reconciles_total").increment(3)
        });
        let ready = Arc::new(AtomicBool::new(false));
        let app = router(Health { metrics: handle, ready: ready.clone() });
        assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
        assert_eq!(get(&app, "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
        ready.store(true, Ordering::Relaxed);
        assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);
        let (status, text) = get(&app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("tps_operator_reconciles_total 3"), "{text}");
    }
}
