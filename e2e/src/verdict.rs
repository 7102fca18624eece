//! The checks every end-to-end test ends with: nothing lost, nothing applied
//! twice, nothing oversold, everything final.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::buyers::Outcome;

/// What Postgres holds at the end.
#[derive(Debug)]
pub struct Ledger {
    /// Confirmed quantity per ticket.
    pub sold: HashMap<Uuid, i64>,
    /// `available` per ticket.
    pub available: HashMap<Uuid, i64>,
    /// `total_quantity` per ticket.
    pub total: HashMap<Uuid, i64>,
    /// Orders in the table.
    pub orders: usize,
}

/// Waits until every accepted order is settled in Postgres (or `timeout`), then
/// asserts: each accepted id is there exactly once with its quantity, no ticket
/// is oversold, `available = total - sold`, and each order reads back final
/// through the API with its owner's token.
pub async fn settle_and_check(
    db_url: &str,
    api: &str,
    outcome: &Outcome,
    timeout: Duration,
) -> anyhow::Result<Ledger> {
    let pool = PgPool::connect(db_url).await?;
    let ids: Vec<Uuid> = outcome.accepted.keys().copied().collect();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let settled: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_one(&pool)
            .await?;
        if settled as usize == ids.len() {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "lost: {} of {} accepted orders never settled",
            ids.len() - settled as usize,
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing but accepted orders may exist, each once, with the accepted quantity.
    let rows: Vec<(Uuid, String, i32)> =
        sqlx::query_as("SELECT id, user_id, quantity FROM orders").fetch_all(&pool).await?;
    for (id, user, qty) in &rows {
        let (u, q) = outcome
            .accepted
            .get(id)
            .ok_or_else(|| anyhow::anyhow!("order {id} settled but never acknowledged"))?;
        anyhow::ensure!(u == user && *q as i32 == *qty, "order {id} changed: {user}/{qty} vs {u}/{q}");
    }
    let tickets: Vec<(Uuid, i64, i64, i64)> = sqlx::query_as(
        "SELECT t.id, t.total_quantity::bigint, t.available::bigint, \
                COALESCE((SELECT sum(quantity) FROM orders o WHERE o.ticket_id = t.id AND o.status = 'CONFIRMED'), 0)::bigint \
         FROM tickets t",
    )
    .fetch_all(&pool)
    .await?;
    let mut ledger =
        Ledger { sold: HashMap::new(), available: HashMap::new(), total: HashMap::new(), orders: rows.len() };
    for (id, total, available, sold) in tickets {
        anyhow::ensure!(sold <= total, "oversold ticket {id}: sold {sold} of {total}");
        anyhow::ensure!(
            available == total - sold,
            "ticket {id}: available {available} but total {total} - sold {sold}"
        );
        ledger.sold.insert(id, sold);
        ledger.available.insert(id, available);
        ledger.total.insert(id, total);
    }
    check_through_api(api, outcome).await?;
    Ok(ledger)
}

/// A sample of the accepted orders read back through the API: final, owner-only.
async fn check_through_api(api: &str, outcome: &Outcome) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for (id, (user, _)) in outcome.accepted.iter().take(50) {
        let resp = client
            .get(format!("{api}/v1/orders/{id}"))
            .bearer_auth(tps_testkit::token(user, false))
            .send()
            .await?;
        anyhow::ensure!(resp.status() == 200, "GET order {id}: {}", resp.status());
        let body: Value = resp.json().await?;
        let status = body["status"].as_str().unwrap_or_default();
        anyhow::ensure!(
            status == "CONFIRMED" || status == "REJECTED",
            "order {id} not final via API: {body}"
        );
        let stranger = client
            .get(format!("{api}/v1/orders/{id}"))
            .bearer_auth(tps_testkit::token("someone-else", false))
            .send()
            .await?;
        anyhow::ensure!(stranger.status() == 404, "another user read order {id}: {}", stranger.status());
    }
    Ok(())
}
