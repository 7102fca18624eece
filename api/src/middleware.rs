//! Cross-cutting layers around the routes.
//!
//! Kept deliberately thin: every layer here runs on every order. The guard
//! (rate limit per IP, in-flight bound, backpressure, deadline) runs first, so
//! a shed request costs almost nothing; metrics see what was served.

use axum::Router;

use crate::state::AppState;

/// Adds the layers that need the matched route (RED metrics).
pub fn wrap(routes: Router<AppState>) -> Router<AppState> {
    // `route_layer` runs after routing, so the matched path is known and
    // unmatched requests do not create series.
    routes.route_layer(axum::middleware::from_fn(crate::telemetry::track))
}

/// Adds the protection layer around everything, unmatched routes included.
pub fn guard(router: Router<AppState>, state: AppState) -> Router<AppState> {
    router.layer(axum::middleware::from_fn_with_state(state, crate::protect::guard))
}
