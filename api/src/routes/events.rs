//! `GET /v1/events`: the caller's order updates and everyone's ticket updates,
//! as a WebSocket, or as SSE when the client sends `Accept: text/event-stream`.

use std::sync::Arc;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::claims_from_header_or_query;
use crate::error::{ApiError, Problem};
use crate::events::{Refused, Subscription, sse, websocket};
use crate::extract::Query;
use crate::protect::{Policy, Protection, guarded};
use crate::state::AppState;

/// The events route.
pub fn router(protection: &Arc<Protection>) -> Router<AppState> {
    guarded(Router::new().route("/v1/events", get(events)), protection, Policy::SIGNED_IN)
}

/// The query of `GET /v1/events`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct EventsQuery {
    /// The bearer token, for clients that cannot set `Authorization` (browsers opening a WebSocket).
    pub token: Option<String>,
}

/// Live updates: `{"type":"order.updated","order":{…}}` for the caller's orders,
/// `{"type":"ticket.updated","ticketId","available","soldOut"}` for every ticket.
#[utoipa::path(
    get, path = "/v1/events", tag = "events", params(EventsQuery),
    responses(
        (status = 101, description = "WebSocket: one JSON text message per event; the server pings every 20 s"),
        (status = 200, description = "Accept: text/event-stream: one `data:` JSON line per event", content_type = "text/event-stream"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json", description = "The user, or this server, holds as many live connections as allowed; `Retry-After` says when to try again"),
    ),
    security(("bearer" = []))
)]
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let claims = claims_from_header_or_query(&headers, query.token.as_deref(), &state.settings.tokens)?;
    let lifetime = until(claims.exp);
    if wants_event_stream(&headers) {
        return Ok(sse::respond(subscribe(&state, &claims.sub)?, lifetime));
    }
    let upgrade = upgrade.map_err(|_| {
        ApiError::BadRequest("GET /v1/events needs a WebSocket upgrade or Accept: text/event-stream".into())
    })?;
    // Subscribed before the handshake completes, so nothing published meanwhile is missed.
    let sub = subscribe(&state, &claims.sub)?;
    let lane = state.lane.clone();
    Ok(upgrade
        // tungstenite allocates its read buffer up front (128 KiB by default): 1.3 GiB for
        // 10,000 clients that only ever send pongs. Clients' messages are capped at 4 KiB.
        .read_buffer_size(websocket::READ_BUFFER)
        .write_buffer_size(websocket::WRITE_BUFFER)
        .max_message_size(websocket::MAX_CLIENT_MESSAGE)
        .max_frame_size(websocket::MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            // Served on the push lane (`events::lane`); this task only waits for it.
            let _ = lane.spawn(websocket::serve(socket, sub, lifetime)).await;
        }))
}

/// Seconds a client refused for a full cap should wait: connections are long-lived.
pub const CAP_RETRY_AFTER_SECS: u64 = 5;

/// A new connection of `user`, within the caps (429 beyond them).
fn subscribe(state: &AppState, user: &str) -> Result<Subscription, ApiError> {
    state.events.try_subscribe(user).map_err(|refused| ApiError::TooManyConnections {
        per: match refused {
            Refused::User => "for this user",
            Refused::Pod => "on this server",
        },
        retry_after_secs: CAP_RETRY_AFTER_SECS,
    })
}

fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

/// Time left until `exp` (seconds since the epoch).
fn until(exp: u64) -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Duration::from_secs(exp).saturating_sub(now)
}
