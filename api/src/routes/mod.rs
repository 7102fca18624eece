//! The HTTP surface: one module per area, assembled into one [`axum::Router`].

pub mod admin;
pub mod events;
pub mod health;
pub mod openapi;
pub mod orders;
pub mod page;
pub mod tickets;
pub mod users;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

pub use crate::protect::body::MAX_BODY_BYTES;

/// A 202 for a command stored in JetStream: `body`, `Location: location`, and
/// `Idempotent-Replayed: true` when it repeats an earlier request.
pub fn accepted(body: impl serde::Serialize, location: String, replayed: bool) -> Response {
    let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::try_from(location) {
        headers.insert(header::LOCATION, location);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Every route, with the few layers the hot path can afford.
pub fn app(state: AppState) -> Router {
    // Each area guards its own routes under its policy (`crate::protect::Policy`).
    let protection = &state.protection;
    let routes = Router::new()
        .merge(orders::router(protection))
        .merge(tickets::router(protection))
        .merge(users::router(protection))
        .merge(events::router(protection))
        .merge(page::router(protection))
        .merge(health::router())
        .merge(admin::router(protection))
        .merge(openapi::router(protection));
    let router = crate::protect::guard_fallbacks(crate::middleware::wrap(routes), protection)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    crate::request_id::wrap(router).with_state(state)
}

/// The router of the METRICS_LISTEN listener.
pub fn metrics_app(state: AppState) -> Router {
    health::metrics_router().with_state(state)
}
