//! Request ids: every request gets an `x-request-id` (the caller's, or a new
//! UUID), echoed in the response and carried by a span around the request, so
//! every log line the request causes (JSON: `span.request_id`) can be grouped.

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tracing::Instrument;

use crate::state::AppState;

/// Outermost layers: set the id, echo it, open the request span.
pub fn wrap(router: Router<AppState>) -> Router<AppState> {
    // The last layer added runs first: set, then propagate, then the span sees the id.
    router
        .layer(axum::middleware::from_fn(span))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

async fn span(request: Request, next: Next) -> Response {
    let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let span = tracing::info_span!("request", request_id = %id, method = %request.method());
    next.run(request).instrument(span).await
}
