//! Keeping the ticket cache fresh: an incremental Postgres poll. The workers'
//! `events.tickets` reach the cache sooner, through `crate::events::pump`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{TicketCache, store};

/// A transaction stamps `updated_at` with its start time but becomes visible at
/// commit, so a row can appear with a stamp older than the newest one seen.
/// Re-reading this window catches it; it costs only rows that changed lately.
const COMMIT_SKEW: chrono::TimeDelta = chrono::TimeDelta::seconds(2);

/// Loads every ticket; returns the newest `updated_at` seen.
pub async fn load_all(cache: &TicketCache, db: &PgPool) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let rows = store::changed_since(db, None).await?;
    Ok(absorb(cache, rows, None))
}

fn absorb(
    cache: &TicketCache,
    rows: Vec<crate::tickets::Ticket>,
    watermark: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    rows.into_iter().fold(watermark, |mark, t| {
        let at = t.updated_at;
        cache.upsert(t);
        Some(mark.map_or(at, |m| m.max(at)))
    })
}

/// Polls Postgres every `every` for tickets changed since the last poll.
pub async fn poll_forever(
    cache: Arc<TicketCache>,
    db: PgPool,
    every: Duration,
    mut watermark: Option<DateTime<Utc>>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store::changed_since(&db, watermark.map(|w| w - COMMIT_SKEW)).await {
            Ok(rows) => watermark = absorb(&cache, rows, watermark),
            Err(e) => tracing::warn!(error = %e, "ticket cache refresh failed; serving the last known stock"),
        }
    }
}
