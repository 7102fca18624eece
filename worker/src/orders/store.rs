//! The SQL of settling orders. Runtime queries only; every statement is one round trip.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use tps_contract::event::OrderView;
use tps_contract::{OrderReason, OrderStatus, OrderUpdated};
use uuid::Uuid;

use super::ledger::Stock;

/// An order row as settled.
#[derive(Debug, Clone)]
pub struct OrderRow {
    /// Primary key: the command's order id.
    pub id: Uuid,
    /// The buyer.
    pub user_id: String,
    /// The ticket.
    pub ticket_id: Uuid,
    /// How many.
    pub quantity: i32,
    /// CONFIRMED or REJECTED.
    pub status: OrderStatus,
    /// Why rejected.
    pub reason: Option<OrderReason>,
    /// Idempotency key of the request, for audits.
    pub idempotency_key: String,
    /// Arrival order on the shard.
    pub stream_seq: i64,
    /// When the api accepted it.
    pub created_at: DateTime<Utc>,
    /// When the worker committed it.
    pub processed_at: DateTime<Utc>,
    /// Why the worker gave up on it, for an order rejected after it could not be settled.
    pub detail: Option<String>,
}

impl OrderRow {
    /// The `order.updated` event of this row.
    pub fn event(&self) -> OrderUpdated {
        OrderUpdated {
            user_id: self.user_id.clone(),
            order: OrderView {
                id: self.id,
                status: self.status,
                reason: self.reason,
                ticket_id: self.ticket_id,
                quantity: self.quantity.max(0) as u32,
                created_at: self.created_at,
                processed_at: Some(self.processed_at),
            },
        }
    }
}

/// Orders of `ids` that are already settled: a redelivery must change nothing.
pub async fn existing(tx: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<OrderRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, user_id, ticket_id, quantity, status, reason, idempotency_key, stream_seq, created_at, processed_at, detail
         FROM orders WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(OrderRow {
                id: r.try_get("id")?,
                user_id: r.try_get("user_id")?,
                ticket_id: r.try_get("ticket_id")?,
                quantity: r.try_get("quantity")?,
                status: OrderStatus::parse(r.try_get("status")?).unwrap_or(OrderStatus::Rejected),
                reason: r.try_get::<Option<&str>, _>("reason")?.and_then(OrderReason::parse),
                idempotency_key: r.try_get("idempotency_key")?,
                stream_seq: r.try_get("stream_seq")?,
                created_at: r.try_get("created_at")?,
                processed_at: r.try_get("processed_at")?,
                detail: r.try_get("detail")?,
            })
        })
        .collect()
}

/// Locks the tickets of the batch, in id order so that lockers never deadlock.
pub async fn lock_tickets(tx: &mut PgConnection, ids: &[Uuid]) -> Result<HashMap<Uuid, Stock>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, available, max_per_order FROM tickets WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(ids)
    .fetch_all(tx)
    .await?;
    rows.iter()
        .map(|r| {
            let available: i32 = r.try_get("available")?;
            let max_per_order: i32 = r.try_get("max_per_order")?;
            Ok((r.try_get("id")?, Stock { available: available.into(), max_per_order: max_per_order.into() }))
        })
        .collect()
}

/// Takes `n` from each ticket of `taken` (one entry per ticket), in one statement.
/// The condition is the second line of defence after the ledger (the CHECK is the
/// third): if it matches fewer tickets than given, the batch aborts. The rows are
/// already locked ([`lock_tickets`]), so the statement waits for no one. `updated_at` moves so
/// that the api's ticket cache sees the change.
pub async fn decrement(tx: &mut PgConnection, taken: &[(Uuid, i64)]) -> Result<(), sqlx::Error> {
    if taken.is_empty() {
        return Ok(());
    }
    let (ids, counts): (Vec<Uuid>, Vec<i32>) = taken.iter().map(|(id, n)| (*id, *n as i32)).unzip();
    let done = sqlx::query(
        "UPDATE tickets t SET available = t.available - d.n, updated_at = now() \
         FROM UNNEST($1::uuid[], $2::int[]) AS d(id, n) WHERE t.id = d.id AND t.available >= d.n",
    )
    .bind(ids)
    .bind(counts)
    .execute(tx)
    .await?
    .rows_affected();
    if done == taken.len() as u64 { Ok(()) } else { Err(sqlx::Error::RowNotFound) }
}

/// The latest moment before the commit: every row of the batch carries it as `processed_at`.
pub async fn commit_clock(tx: &mut PgConnection) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar("SELECT clock_timestamp()").fetch_one(tx).await
}

/// Inserts the batch's new orders in one statement and returns the ids actually
/// inserted; an id already present (settled meanwhile by another transaction, e.g.
/// the same order id on another shard) is skipped. Rows go in id order, so two
/// transactions inserting overlapping ids wait on each other in one order, never
/// in a cycle. Stock must be taken only for the ids returned.
pub async fn insert(tx: &mut PgConnection, rows: &[OrderRow]) -> Result<HashSet<Uuid>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    let mut rows: Vec<&OrderRow> = rows.iter().collect();
    rows.sort_by_key(|r| r.id);
    let col = |f: fn(&OrderRow) -> String| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO orders (id, user_id, ticket_id, quantity, status, reason, idempotency_key, stream_seq, created_at, processed_at, detail)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::int[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::timestamptz[], $10::timestamptz[], $11::text[])
         ON CONFLICT (id) DO NOTHING
         RETURNING id",
    )
    .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(col(|r| r.user_id.clone()))
    .bind(rows.iter().map(|r| r.ticket_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.quantity).collect::<Vec<_>>())
    .bind(col(|r| r.status.as_str().to_owned()))
    .bind(rows.iter().map(|r| r.reason.map(|x| x.as_str().to_owned())).collect::<Vec<Option<String>>>())
    .bind(col(|r| r.idempotency_key.clone()))
    .bind(rows.iter().map(|r| r.stream_seq).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.processed_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.detail.clone()).collect::<Vec<Option<String>>>())
    .fetch_all(tx)
    .await?;
    Ok(ids.into_iter().collect())
}

/// Undoes this transaction's inserts of `ids` (before the batch is decided again).
pub async fn uninsert(tx: &mut PgConnection, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM orders WHERE id = ANY($1)").bind(ids).execute(tx).await.map(drop)
}
