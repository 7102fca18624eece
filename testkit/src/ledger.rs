//! What Postgres holds after a run, as the tallies the verdicts ([`crate::verdict`])
//! judge; read with plain runtime queries, so neither the load runner nor the e2e suites
//! depend on the api's or the worker's code.

use sqlx::PgPool;
use uuid::Uuid;

use crate::verdict::{OrderTally, Source, TicketTally, UserTally};

type Result<T> = std::result::Result<T, sqlx::Error>;

/// A ticket of the run and the quantity its accepted orders asked for.
#[derive(Debug, Clone, Copy)]
pub struct TicketDemand {
    /// The ticket.
    pub id: Uuid,
    /// Quantity asked for by 202'd orders.
    pub demand: u64,
}

/// The orders ledger of a run: per-ticket stock and confirmed quantity,
/// accepted orders with no row, extra rows per (user, key), and rows no 202
/// acknowledged.
pub async fn order_tally(
    pool: &PgPool,
    tickets: &[TicketDemand],
    accepted: &[Uuid],
    unanswered: u64,
    max_quantity: u64,
) -> Result<OrderTally> {
    let ids: Vec<Uuid> = tickets.iter().map(|t| t.id).collect();
    let rows: Vec<(Uuid, i64, i64, i64)> = sqlx::query_as(
        "SELECT t.id, t.total_quantity::bigint, t.available::bigint, \
                COALESCE((SELECT sum(o.quantity) FROM orders o WHERE o.ticket_id = t.id AND o.status = 'CONFIRMED'), 0)::bigint \
         FROM tickets t WHERE t.id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let tallies = rows
        .into_iter()
        .map(|(id, stock, available, sold)| TicketTally {
            id,
            stock: stock as u64,
            sold: sold as u64,
            available: Some(available.max(0) as u64),
            demand: tickets.iter().find(|t| t.id == id).map_or(0, |t| t.demand),
        })
        .collect();
    Ok(OrderTally {
        source: Source::Postgres,
        accepted: accepted.len() as u64,
        not_settled: None,
        lost: missing_orders(pool, accepted).await?,
        duplicates: duplicate_orders(pool, &ids).await?,
        phantom: Some((phantom_orders(pool, &ids, accepted).await?, unanswered)),
        tickets: tallies,
        max_quantity,
    })
}

/// Accepted orders without a row (not settled yet, or lost).
pub async fn missing_orders(pool: &PgPool, accepted: &[Uuid]) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM unnest($1::uuid[]) AS a(id) LEFT JOIN orders o ON o.id = a.id WHERE o.id IS NULL",
    )
    .bind(accepted)
    .fetch_one(pool)
    .await?;
    Ok(n as u64)
}

/// Extra rows per (user, Idempotency-Key) among the orders of `tickets`.
pub async fn duplicate_orders(pool: &PgPool, tickets: &[Uuid]) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(c - 1), 0)::bigint FROM \
           (SELECT count(*) AS c FROM orders WHERE ticket_id = ANY($1) GROUP BY user_id, idempotency_key HAVING count(*) > 1) d",
    )
    .bind(tickets)
    .fetch_one(pool)
    .await?;
    Ok(n as u64)
}

/// Rows of `tickets` that are not among the `accepted` ids.
pub async fn phantom_orders(pool: &PgPool, tickets: &[Uuid], accepted: &[Uuid]) -> Result<u64> {
    // An anti-join rather than `NOT (id = ANY($2))`, which is quadratic for a million ids.
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders o LEFT JOIN unnest($2::uuid[]) AS a(id) ON a.id = o.id \
         WHERE o.ticket_id = ANY($1) AND a.id IS NULL",
    )
    .bind(tickets)
    .bind(accepted)
    .fetch_one(pool)
    .await?;
    Ok(n as u64)
}

/// The sign-ups ledger, or `None` with a note when the schema has no `users`
/// table yet. `created` are the ids the API reported CREATED: each must have a
/// row. Duplicates are extra CREATED rows per lower-cased email (rejected sign-ups keep
/// their email), when there are email and status columns.
pub async fn user_tally(
    pool: &PgPool,
    accepted: &[Uuid],
    created: &[Uuid],
) -> Result<std::result::Result<UserTally, String>> {
    let table: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('public.users')::text").fetch_one(pool).await?;
    if table.is_none() {
        return Ok(Err("Postgres has no users table; sign-up checks ran through the API only".to_owned()));
    }
    let lost: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM unnest($1::uuid[]) AS a(id) LEFT JOIN users u ON u.id = a.id WHERE u.id IS NULL",
    )
    .bind(created)
    .fetch_one(pool)
    .await?;
    let has_email: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'email')
            AND EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'status')",
    )
    .fetch_one(pool)
    .await?;
    let duplicates: i64 = if has_email {
        sqlx::query_scalar(
            "SELECT COALESCE(sum(c - 1), 0)::bigint FROM (SELECT count(*) AS c FROM users u JOIN unnest($1::uuid[]) AS a(id) \
             ON a.id = u.id WHERE u.email IS NOT NULL AND u.status = 'CREATED' GROUP BY lower(u.email) HAVING count(*) > 1) d",
        )
        .bind(accepted)
        .fetch_one(pool)
        .await?
    } else {
        0
    };
    Ok(Ok(UserTally {
        source: Source::Postgres,
        accepted: accepted.len() as u64,
        not_settled: None,
        lost: lost as u64,
        duplicates: duplicates as u64,
    }))
}
