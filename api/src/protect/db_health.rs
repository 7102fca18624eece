//! Postgres reachability, probed in the background, so requests that need
//! Postgres fail at once while it is down instead of each waiting out the
//! pool's acquire timeout, and flow again as soon as a probe succeeds.
//!
//! Which routes need Postgres is said where they are declared
//! ([`super::Policy::needs_postgres`]). The order hot path never does (the ticket
//! cache serves it), so orders keep being accepted while the database is away.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::PgPool;

/// Whether the last probe reached Postgres.
#[derive(Debug)]
pub struct DbHealth {
    up: AtomicBool,
}

impl Default for DbHealth {
    fn default() -> Self {
        Self { up: AtomicBool::new(true) }
    }
}

impl DbHealth {
    /// The last probe's verdict (true before the first probe).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Probes every `every` (0: never, and Postgres counts as up), each bounded by `every` too.
    pub async fn probe_forever(self: std::sync::Arc<Self>, db: PgPool, every: Duration) {
        if every.is_zero() {
            return;
        }
        let bound = every.max(Duration::from_millis(500));
        loop {
            let up =
                matches!(tokio::time::timeout(bound, sqlx::query("SELECT 1").execute(&db)).await, Ok(Ok(_)));
            if up != self.up.swap(up, Ordering::Relaxed) {
                tracing::warn!(up, "postgres reachability changed");
            }
            tokio::time::sleep(every).await;
        }
    }
}
