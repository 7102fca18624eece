//! The checks every end-to-end test ends with: nothing lost, nothing applied
//! twice, nothing oversold, everything final.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use tps_testkit::ledger::{self, TicketDemand};
use tps_testkit::verdict::order_verdicts;
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

/// Waits until every accepted order is settled in Postgres (or `timeout`), then judges the
/// run with the load runner's verdicts (`tps_testkit::verdict`: nothing lost, oversold,
/// duplicated or invented, `available = total - sold`), strictly: every order row must be
/// one a 202 acknowledged. Also each row must hold its accepted buyer and quantity, and
/// each order reads back final through the API, to its owner only.
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
        let missing = ledger::missing_orders(&pool, &ids).await?;
        if missing == 0 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "lost: {missing} of {} accepted orders never settled",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every ticket in the database. The buyers do not record which ticket an order was for,
    // so demand is not known here (the sold-out rule passes trivially): the suites assert
    // what they sold themselves.
    let tickets: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM tickets").fetch_all(&pool).await?;
    let demands: Vec<TicketDemand> = tickets.iter().map(|&id| TicketDemand { id, demand: 0 }).collect();
    let max_quantity = outcome.accepted.values().map(|(_, q)| u64::from(*q)).max().unwrap_or(1);
    // No unanswered requests: a buyer retries with the same key until it gets an answer.
    let tally = ledger::order_tally(&pool, &demands, &ids, 0, max_quantity).await?;
    let failed: Vec<String> = order_verdicts(&tally)
        .into_iter()
        .filter(|v| !v.ok)
        .map(|v| format!("{}: {}", v.check, v.detail))
        .collect();
    anyhow::ensure!(failed.is_empty(), "inconsistent: {}", failed.join("; "));
    // Nothing but accepted orders exists (the phantom verdict), each with its accepted body.
    let rows: Vec<(Uuid, String, i32)> =
        sqlx::query_as("SELECT id, user_id, quantity FROM orders").fetch_all(&pool).await?;
    for (id, user, qty) in &rows {
        let (u, q) = outcome
            .accepted
            .get(id)
            .ok_or_else(|| anyhow::anyhow!("order {id} settled but never acknowledged"))?;
        anyhow::ensure!(u == user && *q as i32 == *qty, "order {id} changed: {user}/{qty} vs {u}/{q}");
    }
    let mut ledger =
        Ledger { sold: HashMap::new(), available: HashMap::new(), total: HashMap::new(), orders: rows.len() };
    for t in &tally.tickets {
        ledger.sold.insert(t.id, t.sold as i64);
        ledger.available.insert(t.id, t.available.unwrap_or_default() as i64);
        ledger.total.insert(t.id, t.stock as i64);
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
