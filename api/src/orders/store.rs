//! Settled orders, as the worker wrote them to Postgres.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tps_contract::event::OrderView;
use tps_contract::{OrderReason, OrderStatus};
use uuid::Uuid;

/// A settled order and its owner.
#[derive(Debug, Clone)]
pub struct SettledOrder {
    /// The buyer.
    pub user: String,
    /// The order as clients see it.
    pub view: OrderView,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    user_id: String,
    ticket_id: Uuid,
    quantity: i32,
    status: String,
    reason: Option<String>,
    created_at: DateTime<Utc>,
    processed_at: DateTime<Utc>,
}

impl From<Row> for SettledOrder {
    fn from(r: Row) -> Self {
        SettledOrder {
            user: r.user_id,
            view: OrderView {
                id: r.id,
                // The table's CHECKs allow only these values.
                status: OrderStatus::parse(&r.status).unwrap_or(OrderStatus::Rejected),
                reason: r.reason.as_deref().and_then(OrderReason::parse),
                ticket_id: r.ticket_id,
                quantity: r.quantity.max(0) as u32,
                created_at: r.created_at,
                processed_at: Some(r.processed_at),
            },
        }
    }
}

const COLUMNS: &str = "id, user_id, ticket_id, quantity, status, reason, created_at, processed_at";

/// One settled order by id, whoever owns it.
pub async fn get(db: &PgPool, id: &Uuid) -> Result<Option<SettledOrder>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE id = $1");
    Ok(sqlx::query_as::<_, Row>(&sql).bind(id).fetch_optional(db).await?.map(Into::into))
}

/// The user's settled orders strictly before `before` in (createdAt, id) order, newest first.
pub async fn list_for_user(
    db: &PgPool,
    user: &str,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<SettledOrder>, sqlx::Error> {
    // `orders_by_user (user_id, created_at DESC, id DESC)` serves both branches.
    let rows = match before {
        Some((at, id)) => {
            let sql = format!(
                "SELECT {COLUMNS} FROM orders WHERE user_id = $1 AND (created_at, id) < ($2, $3) \
                 ORDER BY created_at DESC, id DESC LIMIT $4"
            );
            sqlx::query_as::<_, Row>(&sql).bind(user).bind(at).bind(id).bind(limit).fetch_all(db).await?
        }
        None => {
            let sql = format!(
                "SELECT {COLUMNS} FROM orders WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
            );
            sqlx::query_as::<_, Row>(&sql).bind(user).bind(limit).fetch_all(db).await?
        }
    };
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Whether an order with this id is settled (used to hide stale PENDING records).
pub async fn settled_ids(db: &PgPool, ids: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM orders WHERE id = ANY($1)").bind(ids).fetch_all(db).await
}
