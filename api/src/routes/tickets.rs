//! The catalog: `POST /v1/tickets` (admin), `GET /v1/tickets`, `GET /v1/tickets/{id}`.
//!
//! Reads are public (the catalog is browsable before signing in) and are served
//! from the in-process ticket cache that also serves the order hot path (never
//! more than 1 s stale); searches ask Postgres once per query and page, then
//! the cache. Reads carry an ETag (304 on `If-None-Match`) and are compressed;
//! the write stays free of both layers.

use axum::Router;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tower_http::compression::{CompressionLayer, CompressionLevel};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Admin;
use crate::conditional;
use crate::cursor::{Cursor, page_limit};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use crate::tickets::{NewTicket, Ticket, store};

/// The ticket routes: compressed reads, and the admin write.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tickets", get(list_tickets))
        .route("/v1/tickets/{id}", get(get_ticket))
        .layer(compression())
        .merge(Router::new().route("/v1/tickets", post(create_ticket)))
}

/// gzip at its fastest level: a page of the catalog is a few KiB of repetitive
/// JSON, which shrinks about fivefold even so, and reads must stay cheap under a storm.
pub fn compression() -> CompressionLayer {
    CompressionLayer::new().quality(CompressionLevel::Fastest)
}

/// One page of the catalog.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketPage {
    /// In creation order.
    #[schema(value_type = Vec<Ticket>)]
    pub items: Vec<Arc<Ticket>>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Paging and search of `GET /v1/tickets`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TicketListQuery {
    /// Page size, 1..=100 (default 20).
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// Full-text search over names (web-search syntax: words, "phrases", -exclusions).
    pub q: Option<String>,
}

/// Create a ticket (admin).
#[utoipa::path(
    post, path = "/v1/tickets", tag = "tickets", request_body = NewTicket,
    responses(
        (status = 201, body = Ticket),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_ticket(
    State(state): State<AppState>,
    _admin: Admin,
    Json(new): Json<NewTicket>,
) -> Result<Response, ApiError> {
    new.validate().map_err(ApiError::BadRequest)?;
    let ticket = store::insert(&state.db, &new).await?;
    state.tickets.upsert(ticket.clone());
    let mut response = (StatusCode::CREATED, axum::Json(&ticket)).into_response();
    if let Ok(location) = HeaderValue::try_from(format!("/v1/tickets/{}", ticket.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// List tickets, keyset-paginated, optionally searched by name.
#[utoipa::path(
    get, path = "/v1/tickets", tag = "tickets", params(TicketListQuery),
    responses(
        (status = 200, body = TicketPage, description = "With a weak ETag"),
        (status = 304, description = "If-None-Match named the current ETag"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_tickets(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<TicketListQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(query.limit)?;
    let after = query.cursor.as_deref().map(Cursor::decode).transpose()?;
    let q = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.len() > 200) {
        return Err(ApiError::BadRequest("q must be at most 200 characters".into()));
    }
    // One item more than asked tells whether another page exists, without an empty last page.
    let mut items = match q {
        Some(q) => state.searches.search(&state.tickets, &state.db, q, after, limit + 1).await?,
        None => state.tickets.page(after, limit as usize + 1),
    };
    let next_cursor = (items.len() > limit as usize)
        .then(|| {
            items.truncate(limit as usize);
            items.last().map(|t| Cursor { at: t.created_at, id: t.id }.encode())
        })
        .flatten();
    Ok(conditional::json(&headers, &TicketPage { items, next_cursor }))
}

/// One ticket.
#[utoipa::path(
    get, path = "/v1/tickets/{id}", tag = "tickets",
    params(("id" = Uuid, Path, description = "Ticket id")),
    responses(
        (status = 200, body = Ticket, description = "With a weak ETag"),
        (status = 304, description = "If-None-Match named the current ETag"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_ticket(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let ticket = state.tickets.lookup(&state.db, &id).await?.ok_or(ApiError::NotFound("ticket"))?;
    Ok(conditional::json(&headers, &ticket))
}
