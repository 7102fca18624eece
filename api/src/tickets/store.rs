//! Ticket rows in Postgres. Runtime queries only: there is no database at compile time.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{NewTicket, Ticket};
use crate::cursor::Cursor;

const COLUMNS: &str = "id, name, price_cents, total_quantity, available, available = 0 AS sold_out, \
                       max_per_order, created_at, updated_at";

/// Inserts a ticket with all its stock available.
pub async fn insert(db: &PgPool, new: &NewTicket) -> Result<Ticket, sqlx::Error> {
    let sql = format!(
        "INSERT INTO tickets (id, name, price_cents, total_quantity, available, max_per_order) \
         VALUES ($1, $2, $3, $4, $4, $5) RETURNING {COLUMNS}"
    );
    sqlx::query_as(&sql)
        .bind(Uuid::now_v7())
        .bind(new.name.trim())
        .bind(new.price_cents)
        .bind(new.total_quantity)
        .bind(new.max_per_order)
        .fetch_one(db)
        .await
}

/// One ticket.
pub async fn get(db: &PgPool, id: &Uuid) -> Result<Option<Ticket>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM tickets WHERE id = $1")).bind(id).fetch_optional(db).await
}

/// Every ticket changed after `since` (all of them when `None`).
pub async fn changed_since(db: &PgPool, since: Option<DateTime<Utc>>) -> Result<Vec<Ticket>, sqlx::Error> {
    match since {
        Some(at) => {
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM tickets WHERE updated_at > $1"))
                .bind(at)
                .fetch_all(db)
                .await
        }
        None => sqlx::query_as(&format!("SELECT {COLUMNS} FROM tickets")).fetch_all(db).await,
    }
}

/// A page of the catalog in (createdAt, id) order, after `after`, optionally
/// filtered by a full-text query over names (served by the `name_tsv` GIN index).
pub async fn list(
    db: &PgPool,
    after: Option<Cursor>,
    q: Option<&str>,
    limit: i64,
) -> Result<Vec<Ticket>, sqlx::Error> {
    let (at, id) = after.map(|c| (Some(c.at), Some(c.id))).unwrap_or((None, None));
    // One statement for every combination keeps the plan cache small; NULLs switch the filters off.
    let sql = format!(
        "SELECT {COLUMNS} FROM tickets \
         WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2)) \
           AND ($3::text IS NULL OR name_tsv @@ websearch_to_tsquery('simple', $3)) \
         ORDER BY created_at, id LIMIT $4"
    );
    sqlx::query_as(&sql).bind(at).bind(id).bind(q).bind(limit).fetch_all(db).await
}
