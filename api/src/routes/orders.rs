//! `POST /v1/orders` (the hot path), `GET /v1/orders/{id}` and `GET /v1/orders`.

use std::time::SystemTime;

use async_nats::jetstream::publish::PublishAck;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tps_contract::OrderCommand;
use tps_contract::event::OrderView;
use tps_contract::spans::{self, Span, SpanKind};
use tps_contract::subject::ORDERS_STREAM;
use tps_contract::trace::{TRACEPARENT_HEADER, TraceContext};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::User;
use crate::cursor::{Cursor, page_limit};
use crate::error::{ApiError, Problem};
use crate::extract::{IdempotencyKey, Json, Path, Query};
use crate::orders::claim::{self, Claim, ClaimRequest};
use crate::orders::{pending, publish, store};
use crate::recall::{self, RecallError, SettledKey};
use crate::state::AppState;
use crate::telemetry::metrics;

/// The order routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/orders", post(create_order).get(list_orders))
        .route("/v1/orders/{id}", get(get_order))
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
    let order_id = OrderCommand::id_for(user.id(), &key);
    let now_ms = Utc::now().timestamp_millis();
    let request = ClaimRequest {
        order_id,
        user: user.id(),
        ticket_id: body.ticket_id,
        quantity: body.quantity,
        now_ms,
        sold_out: ticket.sold_out,
        ttl_secs: state.settings.pending_ttl_secs,
    };
    let basis = match claim::claim(&state.redis, &request).await {
        Ok(Claim::New { created_ms }) => Basis::Fresh { created_ms, claimed: true },
        Ok(Claim::Replay { created_ms }) => Basis::Replay { created_ms },
        Ok(Claim::Conflict) => return Err(ApiError::IdempotencyConflict),
        Ok(Claim::SoldOut) => return sold_out_unless_known(&state, order_id, user.id(), &body).await,
        Err(e) => {
            // Degraded: the derived id, JetStream de-duplication and the Postgres
            // primary key still make the order exactly-once without Redis.
            metrics().redis_degraded.inc();
            state.claims.note_degraded();
            tracing::debug!(error = %e, "placing an order without redis");
            if ticket.sold_out {
                return sold_out_unless_known(&state, order_id, user.id(), &body).await;
            }
            Basis::Fresh { created_ms: now_ms, claimed: false }
        }
    };
    let created_ms = match basis {
        Basis::Fresh { created_ms, .. } | Basis::Replay { created_ms } => created_ms,
    };
    let command = OrderCommand {
        order_id,
        user_id: user.0.sub.clone(),
        ticket_id: body.ticket_id,
        quantity: body.quantity,
        idempotency_key: key,
        // The original time on a replay, so a re-published command is identical.
        accepted_at: DateTime::from_timestamp_millis(created_ms).unwrap_or_else(Utc::now),
    };
    let settings = &state.settings;
    let publish = publish::publish(
        &state.jetstream,
        &command,
        &settings.names,
        settings.shards,
        settings.publish_timeout,
        &trace,
    );
    let (replayed, degraded) = match basis {
        Basis::Replay { .. } => match publish.await {
            Ok(_) => (true, false),
            Err(e) => return Err(ApiError::Unavailable(format!("the order could not be stored: {e}"))),
        },
        Basis::Fresh { claimed, .. } => {
            // No claim said whether this key was used: ask Postgres while JetStream stores the
            // command. A second publish of a known key is harmless: the same Nats-Msg-Id is
            // dropped by JetStream within its window, and after it the worker skips an id
            // that is already settled (and Postgres, which we asked, had it settled).
            let recall = state.settled_orders.get(order_id, settings.publish_timeout);
            let (published, recalled) = tokio::join!(publish, recall);
            let fresh = Fresh { order_id, user: user.id(), body: &body, claimed, created_ms };
            match known_answer(&state, &fresh, recalled, published).await? {
                Some(response) => return Ok(response),
                None => (false, !claimed),
            }
        }
    };
    if replayed {
        metrics().idempotent_replays.inc();
    } else {
        metrics().orders_accepted.inc();
    }
    tracing::debug!(trace_id = %trace.trace_id, span_id = %trace.span_id, %order_id, replayed, "order accepted");
    let mut response = accepted(order_id, body.ticket_id, body.quantity, replayed);
    if let Some(start) = started {
        export_span(&trace, caller.map(|c| c.span_id), start, &command, replayed, degraded);
    }
    // Echoed so a client without a tracer can still quote the trace id.
    if let Ok(value) = HeaderValue::try_from(trace.header()) {
        response.headers_mut().insert(TRACEPARENT_HEADER, value);
    }
    Ok(response)
}

/// What the Redis claim said of the key.
#[derive(Debug, Clone, Copy)]
enum Basis {
    /// No claim existed: a brand-new key, or one whose claim Redis lost or let expire.
    /// `claimed` when a claim was written now (false: Redis was unreachable).
    Fresh { created_ms: i64, claimed: bool },
    /// The claim holds this body: a replay.
    Replay { created_ms: i64 },
}

/// Whether the body is the one the order was made with.
fn same_body(settled: &SettledKey, user: &str, body: &CreateOrder) -> bool {
    settled.user_id == user && settled.ticket_id == body.ticket_id && settled.quantity == body.quantity
}

/// A request whose key had no claim.
struct Fresh<'a> {
    order_id: Uuid,
    user: &'a str,
    body: &'a CreateOrder,
    /// Whether a claim was written now (false: Redis was unreachable).
    claimed: bool,
    /// The `acceptedAt` (ms) this request published.
    created_ms: i64,
}

/// The answer for a key whose claim was missing, from what Postgres and the PubAck say:
/// `Some` when the key was used before (a replay, a 422) or nothing was stored (503),
/// `None` when it is new and its order was just stored.
async fn known_answer(
    state: &AppState,
    fresh: &Fresh<'_>,
    recalled: Result<Option<SettledKey>, RecallError>,
    published: Result<PublishAck, publish::PublishError>,
) -> Result<Option<Response>, ApiError> {
    let Fresh { order_id, user, body, claimed, created_ms } = *fresh;
    let settled = match recalled {
        Ok(settled) => settled,
        Err(e) => {
            // Postgres cannot say: answer from JetStream alone, as without it.
            recall::count("order", "unknown");
            tracing::debug!(error = %e, %order_id, "settled orders not consulted");
            None
        }
    };
    // The lookup runs beside the publish, so a fast worker may already have settled the very
    // order this request published: same body and the same acceptedAt is this request's own.
    // (Same body and this request's own `acceptedAt`: this request's own command.)
    let own = |known: &SettledKey| same_body(known, user, body) && known.created_ms == created_ms;
    let settled = settled.filter(|s| !own(s));
    if let Some(settled) = settled {
        // Settled: the stored body decides, whatever the publish did.
        return answer_from(state, order_id, user, body, &settled, claimed).await.map(Some);
    }
    let ack = match published {
        Ok(ack) => ack,
        Err(e) => {
            if claimed {
                claim::mark_failed(&state.redis, &order_id).await;
            }
            return Err(ApiError::Unavailable(format!("the order could not be stored: {e}")));
        }
    };
    if !ack.duplicate {
        recall::count("order", "none");
        return Ok(None);
    }
    // JetStream already holds this id: the key was used, and its order is not settled
    // yet (or was settled since we asked). The stored command tells its body.
    let bound = state.settings.publish_timeout;
    let stored: Option<OrderCommand> = crate::jetstream::stored_command(
        &state.jetstream,
        &state.settings.names.stream(ORDERS_STREAM),
        ack.sequence,
        bound,
    )
    .await;
    let earlier = match stored.filter(|c| c.order_id == order_id) {
        Some(c) => Some(SettledKey {
            user_id: c.user_id,
            ticket_id: c.ticket_id,
            quantity: c.quantity,
            created_ms: c.accepted_at.timestamp_millis(),
        }),
        // Gone from the stream: settled meanwhile (or expired); ask Postgres once more.
        None => state.settled_orders.get(order_id, bound).await.ok().flatten(),
    };
    // The same body with this request's own `acceptedAt` is this request's claim: a concurrent
    // request with the same key found the claim and published the same command first (or a
    // fast worker settled it). The order is new, and this is its first answer.
    if earlier.as_ref().is_some_and(own) {
        recall::count("order", "none");
        return Ok(None);
    }
    match earlier {
        Some(earlier) => answer_from(state, order_id, user, body, &earlier, claimed).await.map(Some),
        None => {
            // Known to JetStream, body unknown to both: the only answer left is the replay.
            recall::count("order", "unverified");
            metrics().idempotent_replays.inc();
            Ok(Some(accepted(order_id, body.ticket_id, body.quantity, true)))
        }
    }
}

/// The answer for a key whose order is known (settled, or stored in the stream):
/// the same body gets its 202 again, another body 422. The claim is written back so
/// that Redis answers the next request with this key.
async fn answer_from(
    state: &AppState,
    order_id: Uuid,
    user: &str,
    body: &CreateOrder,
    known: &SettledKey,
    claimed: bool,
) -> Result<Response, ApiError> {
    let same = same_body(known, user, body);
    recall::count("order", if same { "same" } else { "other" });
    if !(claimed && same) {
        // A claim was just written with another body, or none is there: write the known one.
        let remembered = claim::RememberedOrder {
            user,
            ticket_id: known.ticket_id,
            quantity: known.quantity,
            created_ms: known.created_ms,
        };
        claim::remember(&state.redis, &order_id, &remembered, state.settings.pending_ttl_secs).await;
    }
    if !same {
        return Err(ApiError::IdempotencyConflict);
    }
    metrics().idempotent_replays.inc();
    Ok(accepted(order_id, known.ticket_id, known.quantity, true))
}

/// How long a sold-out refusal waits for Postgres to say whether the key has an order.
const SOLD_OUT_LOOKUP_BOUND: std::time::Duration = std::time::Duration::from_secs(3);

/// A claimless key on a ticket known to be sold out: `409 SOLD_OUT` only when no order can
/// have this key. A settled one is in Postgres (its 202 again, or 422). An unsettled one can
/// exist only while the claims are in doubt (Redis lost its data or was unreachable, and the
/// orders from before are not all settled: `claims_watch.rs`); then the api cannot tell yet and
/// answers 503 + `Retry-After`, not a final answer, and the retry gets the right one once the
/// backlog is settled. It does not publish instead: a new key would then get a 202 where an
/// earlier attempt got 409, and every sold-out request would become an order to reject.
async fn sold_out_unless_known(
    state: &AppState,
    order_id: Uuid,
    user: &str,
    body: &CreateOrder,
) -> Result<Response, ApiError> {
    // Nothing runs beside this lookup, and without its answer the request gets 503: wait for it
    // as long as for a pool connection (a fresh pool on a loaded host may need a second to connect).
    let bound = state.settings.publish_timeout.max(SOLD_OUT_LOOKUP_BOUND);
    match state.settled_orders.get(order_id, bound).await {
        Ok(Some(settled)) => answer_from(state, order_id, user, body, &settled, false).await,
        Ok(None) if !state.claims.in_doubt() => {
            recall::count("order", "none");
            Ok(sold_out(body.ticket_id))
        }
        Ok(None) => {
            recall::count("order", "in_doubt");
            Err(ApiError::Unavailable(
                "the ticket is sold out, and whether this key has an order still in the stream cannot be \
                 told until the orders accepted before Redis lost its data are settled"
                    .into(),
            ))
        }
        // Without Postgres, a key whose claim expired cannot be told from a new one.
        Err(e) => {
            recall::count("order", "unknown");
            Err(ApiError::Unavailable(format!(
                "the ticket is sold out, and whether this key has an order cannot be told now: {e}"
            )))
        }
    }
}

/// The OTLP span of an accepted order: our own trace context (the one echoed and
/// put on the message, so the worker's settle span is its child), the caller's
/// span as parent. Queued without waiting (`tps_contract::spans`).
fn export_span(
    trace: &TraceContext,
    parent_span_id: Option<String>,
    start: SystemTime,
    command: &OrderCommand,
    replayed: bool,
    degraded: bool,
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
            ("tps.order_id", command.order_id.to_string().into()),
            ("tps.ticket_id", command.ticket_id.to_string().into()),
            ("tps.quantity", command.quantity.into()),
            ("tps.replayed", replayed.into()),
            ("tps.redis_degraded", degraded.into()),
        ],
    });
}

fn accepted(id: Uuid, ticket_id: Uuid, quantity: u32, replayed: bool) -> Response {
    super::accepted(
        Accepted { id, status: "PENDING", ticket_id, quantity },
        format!("/v1/orders/{id}"),
        replayed,
    )
}

fn sold_out(ticket_id: Uuid) -> Response {
    metrics().sold_out_rejections.inc();
    let body = SoldOut { status: "REJECTED", reason: "SOLD_OUT", ticket_id };
    (StatusCode::CONFLICT, axum::Json(body)).into_response()
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
