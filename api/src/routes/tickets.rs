//! The catalog: `POST /v1/tickets` (admin), `GET /v1/tickets`, `GET /v1/tickets/{id}`.
//!
//! Reads are public (the catalog is browsable before signing in) and are served
//! from the in-process ticket cache that also serves the order hot path (never
//! more than 1 s stale); searches ask Postgres once per query (and per new
//! ticket), then the cache filters, sorts and pages what it found. Reads carry an ETag (304 on `If-None-Match`) and are compressed;
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
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, Query};
use crate::protect::{Policy, Protection, guarded};
use crate::state::AppState;
use crate::tickets::query::{CatalogQuery, Position, RawParams};
use crate::tickets::{NewTicket, Ticket, store};

/// The ticket routes: compressed anonymous reads from the cache, and the signed-in admin
/// write, which needs Postgres.
pub fn router(protection: &Arc<Protection>) -> Router<AppState> {
    let reads = Router::new()
        .route("/v1/tickets", get(list_tickets))
        .route("/v1/tickets/{id}", get(get_ticket))
        .layer(compression());
    let create = Router::new().route("/v1/tickets", post(create_ticket));
    guarded(reads, protection, Policy::ANONYMOUS).merge(guarded(
        create,
        protection,
        Policy::SIGNED_IN.needs_postgres(),
    ))
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
    /// In the order asked for (`sort`).
    #[schema(value_type = Vec<Ticket>)]
    pub items: Vec<Arc<Ticket>>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Paging, search, filters and sort of `GET /v1/tickets`. Every value is read as
/// text and checked by `tickets::query`, so that a bad one is a 400 naming it.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TicketListQuery {
    /// Page size, 1..=100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `nextCursor` of the previous page. It continues only the query that made it:
    /// with another `q`, `available`, price bound or `sort` it is a 400.
    pub cursor: Option<String>,
    /// Search over names, at most 200 characters and no control characters: full text (web-search syntax: words,
    /// "phrases", -exclusions) and typo-tolerant (trigram word similarity ≥ 0.5 to the
    /// words sought). Ranked by relevance = word similarity + 10 × ts_rank.
    pub q: Option<String>,
    /// `true` hides sold-out tickets (stock as known, ≤ 1 s stale).
    #[param(value_type = Option<bool>)]
    pub available: Option<String>,
    /// Inclusive lower price bound, cents ≥ 0.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub min_price_cents: Option<String>,
    /// Inclusive upper price bound, cents ≥ `minPriceCents`.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub max_price_cents: Option<String>,
    /// `relevance` (default with `q`, needs `q`), `price`, `-price` or `newest` (default without `q`).
    #[param(value_type = Option<String>, pattern = "^(relevance|price|-price|newest)$")]
    pub sort: Option<String>,
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

/// List tickets: keyset pages, searched, filtered and sorted.
///
/// Without `q` the page comes from the in-process cache's ordered indexes; with
/// `q` Postgres finds and ranks the matches once per query (and per new ticket),
/// then the cache filters, sorts and pages them. Stock is never more than 1 s stale.
#[utoipa::path(
    get, path = "/v1/tickets", tag = "tickets", params(TicketListQuery),
    responses(
        (status = 200, body = TicketPage, description = "With a weak ETag"),
        (status = 304, description = "If-None-Match named the current ETag"),
        (status = 400, body = Problem, content_type = "application/problem+json",
         description = "A bad parameter, named at the start of `detail`, or a cursor of another query"),
    )
)]
pub async fn list_tickets(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<TicketListQuery>,
) -> Result<Response, ApiError> {
    let query = CatalogQuery::parse(&RawParams {
        limit: params.limit.as_deref(),
        cursor: params.cursor.as_deref(),
        q: params.q.as_deref(),
        available: params.available.as_deref(),
        min_price_cents: params.min_price_cents.as_deref(),
        max_price_cents: params.max_price_cents.as_deref(),
        sort: params.sort.as_deref(),
    })?;
    let limit = query.limit;
    // One item more than asked tells whether another page exists, without an empty last page.
    let mut items: Vec<(Arc<Ticket>, f32)> = match &query.search {
        Some(search) => state.searches.search(&state.tickets, &state.db, search, &query, limit + 1).await?,
        None => state
            .tickets
            .browse(&query.filter, query.sort, query.after, limit + 1)
            .into_iter()
            .map(|t| (t, 0.0))
            .collect(),
    };
    let next_cursor = (items.len() > limit)
        .then(|| {
            items.truncate(limit);
            items.last().map(|(t, score)| query.cursor_after(&Position::of(query.sort, t, *score)))
        })
        .flatten();
    let items = items.into_iter().map(|(t, _)| t).collect();
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
