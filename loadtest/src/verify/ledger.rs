//! What only the load runner asks of Postgres after a run; the tallies the verdicts
//! judge are shared with the e2e suites (`tps_testkit::ledger`).

use std::time::SystemTime;

use sqlx::PgPool;
use uuid::Uuid;

use crate::error::Result;

/// When the last order of the run's tickets was committed.
pub async fn last_order_commit(pool: &PgPool, tickets: &[Uuid]) -> Result<Option<SystemTime>> {
    let at: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT max(processed_at) FROM orders WHERE ticket_id = ANY($1)")
            .bind(tickets)
            .fetch_one(pool)
            .await?;
    Ok(at.map(SystemTime::from))
}
