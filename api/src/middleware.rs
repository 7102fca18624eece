//! Cross-cutting layers around the routes.
//!
//! Kept deliberately thin: every layer here runs on every order. The guard (rate
//! limit per IP, body deadline, in-flight bound, backpressure, deadline) is layered
//! on each area's routes under its policy (`crate::protect::guarded`), inside the
//! RED metrics layer: a shed request costs almost nothing, and is counted with its
//! route and status like any other answer.

use axum::Router;

use crate::state::AppState;

/// Adds the layers that need the matched route (RED metrics).
pub fn wrap(routes: Router<AppState>) -> Router<AppState> {
    // `route_layer` runs after routing, so the matched path is known and
    // unmatched requests do not create series.
    routes.route_layer(axum::middleware::from_fn(crate::telemetry::track))
}
