//! Admin routes over dead letters: `GET /v1/admin/dead-letters` and
//! `POST /v1/admin/dead-letters/{id}/replay`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Admin;
use crate::cursor::page_limit;
use crate::dead_letters::{self, DeadLetter};
use crate::error::{ApiError, Problem};
use crate::extract::{Path, Query};
use crate::protect::{Policy, Protection, guarded};
use crate::state::AppState;

/// The admin routes.
pub fn router(protection: &Arc<Protection>) -> Router<AppState> {
    let admin = Router::new()
        .route("/v1/admin/dead-letters", get(list_dead_letters))
        .route("/v1/admin/dead-letters/{id}/replay", post(replay_dead_letter));
    guarded(admin, protection, Policy::SIGNED_IN)
}

/// A command the worker gave up on.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterView {
    /// Its id (the sequence in DEAD_LETTERS); replay with it.
    pub id: u64,
    /// Why the worker gave up.
    pub reason: String,
    /// Deliveries before it gave up.
    pub delivery_count: u64,
    /// `ORDERS` or `USERS`.
    pub original_stream: String,
    /// The subject it was published on, where a replay goes.
    pub original_subject: String,
    /// Its sequence in the original stream.
    pub original_sequence: u64,
    /// Its original `Nats-Msg-Id` (the order id for orders).
    pub original_msg_id: String,
    /// When it was dead-lettered.
    pub dead_lettered_at: DateTime<Utc>,
    /// How the worker settled the command when it gave up on it (an order: `REJECTED INVALID`);
    /// absent when it could not. A settled command is not replayed (409).
    pub settled_as: Option<String>,
    /// The payload's size.
    pub payload_bytes: usize,
    /// Its first characters, lossily as UTF-8.
    pub payload_preview: String,
}

impl From<DeadLetter> for DeadLetterView {
    fn from(l: DeadLetter) -> Self {
        Self {
            payload_preview: l.preview(),
            payload_bytes: l.payload.len(),
            id: l.id,
            reason: l.reason,
            delivery_count: l.delivery_count,
            original_stream: l.original_stream,
            original_subject: l.original_subject,
            original_sequence: l.original_sequence,
            original_msg_id: l.original_msg_id,
            dead_lettered_at: l.dead_lettered_at,
            settled_as: l.settled_as,
        }
    }
}

/// One page of dead letters, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterPage {
    /// Oldest first.
    pub items: Vec<DeadLetterView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Paging of `GET /v1/admin/dead-letters`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterQuery {
    /// Page size, 1..=100 (default 20).
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// The answer to a replay.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Replayed {
    /// The dead letter replayed (now removed).
    pub id: u64,
    /// Where the command went.
    pub subject: String,
    /// Its new sequence in the original stream.
    pub sequence: u64,
}

/// List dead letters (admin).
#[utoipa::path(
    get, path = "/v1/admin/dead-letters", tag = "admin", params(DeadLetterQuery),
    responses(
        (status = 200, body = DeadLetterPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_dead_letters(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<DeadLetterQuery>,
) -> Result<axum::Json<DeadLetterPage>, ApiError> {
    let limit = page_limit(query.limit)? as usize;
    let from = match query.cursor.as_deref() {
        None => 1,
        Some(c) => c.parse::<u64>().map_err(|_| ApiError::BadRequest("invalid cursor".into()))?,
    };
    let (letters, next) = dead_letters::list(&state.jetstream, &state.settings.names, from, limit).await?;
    Ok(axum::Json(DeadLetterPage {
        items: letters.into_iter().map(Into::into).collect(),
        next_cursor: next.map(|n| n.to_string()),
    }))
}

/// Replay a dead letter onto its original subject and remove it (admin). A dead letter whose
/// command is already settled (e.g. an order the worker stored REJECTED `INVALID` when it gave
/// up on it) is not replayed: 409, and the letter stays.
#[utoipa::path(
    post, path = "/v1/admin/dead-letters/{id}/replay", tag = "admin",
    params(("id" = u64, Path, description = "Dead letter id")),
    responses(
        (status = 202, body = Replayed, description = "Stored again on its original subject; a worker will settle it"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "No such dead letter (or already replayed)"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "Its command is already settled (CONFIRMED, REJECTED, CREATED): nothing was replayed, the letter stays"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn replay_dead_letter(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<u64>,
) -> Result<(StatusCode, axum::Json<Replayed>), ApiError> {
    if id == 0 {
        return Err(ApiError::NotFound("dead letter"));
    }
    let (subject, sequence) =
        dead_letters::replay(&state.jetstream, &state.settings.names, &state.db, id).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(Replayed { id, subject, sequence })))
}
