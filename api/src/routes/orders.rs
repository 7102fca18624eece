//! `POST /v1/orders` (the hot path), `GET /v1/orders/{id}` and `GET /v1/orders`.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tps_contract::OrderCommand;
use tps_contract::event::OrderView;
use tps_contract::subject::{ORDERS_STREAM, StreamNames};
use tps_contract::trace::{TRACEPARENT_HEADER, TraceContext};
use tps_runtime::spans::{self, Span, SpanKind};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::accept::{self, Acceptable, Stored};
use crate::auth::User;
use crate::claim::{Body, Record};
use crate::cursor::{Cursor, page_limit};
use crate::error::{ApiError, Problem};
use crate::extract::{IdempotencyKey, Json, Path, Query};
use crate::orders::{claim, order_key, pending, store, user_orders_key};
use crate::protect::{Policy, Protection, Stream, guarded};
use crate::recall::Batcher;
use crate::state::AppState;
use crate::telemetry::metrics;

/// The order routes: signed in; reads need Postgres, new orders never do but are shed
/// while the order consumers lag.
pub fn router(protection: &Arc<Protection>) -> Router<AppState> {
    let place = Router::new().route("/v1/orders", post(create_order));
    let reads = Router::new().route("/v1/orders", get(list_orders)).route("/v1/orders/{id}", get(get_order));
    guarded(place, protection, Policy::SIGNED_IN.sheds_on_backlog(Stream::Orders)).merge(guarded(
        reads,
        protection,
        Policy::SIGNED_IN.needs_postgres(),
    ))
}

/// The body of `POST /v1/orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateOrder {
    /// The ticket to buy.
    pub ticket_id: Uuid,
    /// How many, within 1..=maxPerOrder of the ticket.
    pub quantity: u32,
}

/// The 202 answer: the order is durable and will be settled.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// The order id (derived from the user and the Idempotency-Key).
    pub id: Uuid,
    /// Always `PENDING`.
    #[schema(example = "PENDING")]
    pub status: &'static str,
    /// The ticket.
    pub ticket_id: Uuid,
    /// How many.
    pub quantity: u32,
}

/// The 409 answer: the ticket is known to be sold out, and no order was made.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SoldOut {
    /// Always `REJECTED`.
    #[schema(example = "REJECTED")]
    pub status: &'static str,
    /// Always `SOLD_OUT`.
    #[schema(example = "SOLD_OUT")]
    pub reason: &'static str,
    /// The ticket.
    pub ticket_id: Uuid,
}

/// An order as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Order id.
    pub id: Uuid,
    /// `PENDING`, `CONFIRMED` or `REJECTED`.
    #[schema(value_type = String, example = "CONFIRMED")]
    pub status: tps_contract::OrderStatus,
    /// `SOLD_OUT`, `INSUFFICIENT_STOCK` or `INVALID`, when rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "SOLD_OUT")]
    pub reason: Option<tps_contract::OrderReason>,
    /// The ticket.
    pub ticket_id: Uuid,
    /// How many.
    pub quantity: u32,
    /// When the api accepted it.
    pub created_at: DateTime<Utc>,
    /// When it was settled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processed_at: Option<DateTime<Utc>>,
}

impl From<OrderView> for Order {
    fn from(v: OrderView) -> Self {
        Order {
            id: v.id,
            status: v.status,
            reason: v.reason,
            ticket_id: v.ticket_id,
            quantity: v.quantity,
            created_at: v.created_at,
            processed_at: v.processed_at,
        }
    }
}

/// One page of the caller's orders.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPage {
    /// Newest first.
    pub items: Vec<Order>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Paging of `GET /v1/orders`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OrderListQuery {
    /// Page size, 1..=100 (default 20).
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// Place an order. Answers 202 only once JetStream has stored the command.
#[utoipa::path(
    post, path = "/v1/orders", tag = "orders", request_body = CreateOrder,
    params(("Idempotency-Key" = String, Header, description = "1-128 visible ASCII characters")),
    responses(
        (status = 202, body = Accepted, description = "Durable; will be settled. `Idempotent-Replayed: true` on a replay."),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "Unknown ticket"),
        (status = 409, body = SoldOut, description = "The ticket is known to be sold out; no order was made"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "Key reused with another body"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "Not stored; retry with the same key after Retry-After"),
    ),
    security(("bearer" = []))
)]
pub async fn create_order(
    State(state): State<AppState>,
    user: User,
    IdempotencyKey(key): IdempotencyKey,
    headers: HeaderMap,
    Json(body): Json<CreateOrder>,
) -> Result<Response, ApiError> {
    // This request's span: a child of the caller's trace, or the root of a new one.
    let caller = headers.get(TRACEPARENT_HEADER).and_then(|v| v.to_str().ok()).and_then(TraceContext::parse);
    let trace = caller.as_ref().map_or_else(TraceContext::root, TraceContext::child);
    // Only when spans are exported (the `otlp` feature and an endpoint): a constant None otherwise.
    let started = spans::enabled().then(SystemTime::now);
    let ticket =
        state.tickets.lookup(&state.db, &body.ticket_id).await?.ok_or(ApiError::NotFound("ticket"))?;
    let max = u32::try_from(ticket.max_per_order).unwrap_or(1);
    if !(1..=max).contains(&body.quantity) {
        return Err(ApiError::BadRequest(format!("quantity must be within 1..={max} for this ticket")));
    }
    let request = OrderRequest {
        order_id: OrderCommand::id_for(user.id(), &key),
        user: user.id(),
        idempotency_key: &key,
        ticket_id: body.ticket_id,
        quantity: body.quantity,
        sold_out: ticket.sold_out,
        trace: &trace,
    };
    let answer = accept::accept(&state, &request).await?;
    // Answered from an earlier use of the key: no command was stored by this request.
    let Some(stored) = answer.stored else { return Ok(answer.response) };
    let order_id = request.order_id;
    tracing::debug!(trace_id = %trace.trace_id, span_id = %trace.span_id, %order_id, stored.replayed, "order accepted");
    let mut response = answer.response;
    if let Some(start) = started {
        export_span(&trace, caller.map(|c| c.span_id), start, &request, stored);
    }
    // Echoed so a client without a tracer can still quote the trace id.
    if let Ok(value) = HeaderValue::try_from(trace.header()) {
        response.headers_mut().insert(TRACEPARENT_HEADER, value);
    }
    Ok(response)
}

/// An order on its way through [`accept::accept`]: claimed on its derived id, with the
/// PENDING record (buyer, ticket, quantity) and the buyer's index in the claim; refused
/// while the ticket is known to be sold out.
struct OrderRequest<'a> {
    /// Derived from the buyer and the `Idempotency-Key`.
    order_id: Uuid,
    /// The buyer.
    user: &'a str,
    idempotency_key: &'a str,
    ticket_id: Uuid,
    quantity: u32,
    /// What the ticket cache says.
    sold_out: bool,
    /// Carried on the message, so the worker's settle span continues this trace.
    trace: &'a TraceContext,
}

impl Acceptable for OrderRequest<'_> {
    type Command = OrderCommand;

    const KIND: &'static str = "order";
    const NOUN: &'static str = "order";
    const STREAM: &'static str = ORDERS_STREAM;
    const STREAM_LABEL: &'static str = "orders";
    const REFUSED: &'static str = "the ticket is sold out";

    fn id(&self) -> Uuid {
        self.order_id
    }

    fn claim_key(&self) -> String {
        order_key(&self.order_id)
    }

    fn body(&self) -> Body {
        claim::body(self.user, &self.ticket_id, self.quantity)
    }

    fn index(&self) -> Option<(String, String)> {
        Some((user_orders_key(self.user), self.order_id.to_string()))
    }

    fn refuse_new(&self) -> bool {
        self.sold_out
    }

    fn command(&self, created_ms: i64) -> OrderCommand {
        OrderCommand {
            order_id: self.order_id,
            user_id: self.user.to_owned(),
            ticket_id: self.ticket_id,
            quantity: self.quantity,
            idempotency_key: self.idempotency_key.to_owned(),
            accepted_at: DateTime::from_timestamp_millis(created_ms).unwrap_or_else(Utc::now),
        }
    }

    fn command_id(command: &OrderCommand) -> Uuid {
        command.order_id
    }

    fn command_record(command: OrderCommand) -> Record {
        let created_ms = command.accepted_at.timestamp_millis();
        claim::record(&command.user_id, &command.ticket_id, command.quantity, created_ms)
    }

    fn subject(command: &OrderCommand, names: &StreamNames, shards: u32) -> String {
        names.order_subject(tps_contract::shard_for(&command.ticket_id, shards))
    }

    fn headers(&self, headers: &mut async_nats::HeaderMap) {
        // The worker's settle continues this trace (W3C traceparent on the message).
        headers.insert(TRACEPARENT_HEADER, self.trace.header().as_str());
    }

    fn settled(state: &AppState) -> &Batcher<Record> {
        &state.settled_orders
    }

    fn conflict() -> ApiError {
        ApiError::IdempotencyConflict
    }

    fn accepted(&self, replayed: bool) -> Response {
        let id = self.order_id;
        let body = Accepted { id, status: "PENDING", ticket_id: self.ticket_id, quantity: self.quantity };
        super::accepted(body, format!("/v1/orders/{id}"), replayed)
    }

    fn refusal(&self) -> Response {
        metrics().sold_out_rejections.inc();
        let body = SoldOut { status: "REJECTED", reason: "SOLD_OUT", ticket_id: self.ticket_id };
        (StatusCode::CONFLICT, axum::Json(body)).into_response()
    }

    fn count(replayed: bool) {
        if replayed {
            metrics().idempotent_replays.inc();
        } else {
            metrics().orders_accepted.inc();
        }
    }
}

/// The OTLP span of an accepted order: our own trace context (the one echoed and
/// put on the message, so the worker's settle span is its child), the caller's
/// span as parent. Queued without waiting (`tps_runtime::spans`).
fn export_span(
    trace: &TraceContext,
    parent_span_id: Option<String>,
    start: SystemTime,
    order: &OrderRequest<'_>,
    stored: Stored,
) {
    spans::export(Span {
        name: "POST /v1/orders",
        kind: SpanKind::Server,
        context: trace.clone(),
        parent_span_id,
        start,
        end: SystemTime::now(),
        attributes: vec![
            ("http.request.method", "POST".into()),
            ("http.route", "/v1/orders".into()),
            ("http.response.status_code", u32::from(StatusCode::ACCEPTED.as_u16()).into()),
            ("tps.order_id", order.order_id.to_string().into()),
            ("tps.ticket_id", order.ticket_id.to_string().into()),
            ("tps.quantity", order.quantity.into()),
            ("tps.replayed", stored.replayed.into()),
            ("tps.redis_degraded", stored.degraded.into()),
        ],
    });
}

/// One of the caller's orders: settled from Postgres, else PENDING from Redis.
#[utoipa::path(
    get, path = "/v1/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, body = Order),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "Unknown, or someone else's"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "Not settled, and Redis is unreachable"),
    ),
    security(("bearer" = []))
)]
pub async fn get_order(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Order>, ApiError> {
    if let Some(order) = store::get(&state.db, &id).await? {
        // Someone else's order is indistinguishable from none.
        return (order.user == user.id())
            .then(|| axum::Json(order.view.into()))
            .ok_or(ApiError::NotFound("order"));
    }
    match pending::get(&state.redis, &id).await {
        Ok(Some(order)) if order.user == user.id() => Ok(axum::Json(order.view.into())),
        Ok(_) => Err(ApiError::NotFound("order")),
        Err(e) => Err(ApiError::Unavailable(format!(
            "the order is not settled and pending orders are unreadable: {e}"
        ))),
    }
}

/// The caller's orders, newest first, pending ones included.
#[utoipa::path(
    get, path = "/v1/orders", tag = "orders", params(OrderListQuery),
    responses(
        (status = 200, body = OrderPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_orders(
    State(state): State<AppState>,
    user: User,
    Query(query): Query<OrderListQuery>,
) -> Result<axum::Json<OrderPage>, ApiError> {
    let limit = page_limit(query.limit)?;
    let before = query.cursor.as_deref().map(Cursor::decode).transpose()?;
    let position = before.map(|c| (c.at, c.id));
    // One more than asked tells whether another page exists.
    let settled = store::list_for_user(&state.db, user.id(), position, limit + 1).await?;
    // Pending orders come from the user's Redis index; without Redis the page shows settled ones only.
    let max_ms = before.map(|c| c.at.timestamp_millis());
    let pending =
        pending::recent(&state.redis, user.id(), max_ms, limit as usize + 16).await.unwrap_or_default();
    let pending_ids: Vec<Uuid> = pending.iter().map(|p| p.view.id).collect();
    let already_settled =
        if pending_ids.is_empty() { Vec::new() } else { store::settled_ids(&state.db, &pending_ids).await? };

    let mut items: Vec<OrderView> = settled.into_iter().map(|s| s.view).collect();
    items.extend(
        pending
            .into_iter()
            .map(|p| p.view)
            .filter(|v| !already_settled.contains(&v.id))
            .filter(|v| position.is_none_or(|p| (v.created_at, v.id) < p)),
    );
    items.sort_by_key(|v| std::cmp::Reverse((v.created_at, v.id)));
    let next_cursor = (items.len() > limit as usize)
        .then(|| {
            items.truncate(limit as usize);
            items.last().map(|v| Cursor { at: v.created_at, id: v.id }.encode())
        })
        .flatten();
    Ok(axum::Json(OrderPage { items: items.into_iter().map(Into::into).collect(), next_cursor }))
}
