//! Postgres reachability, probed in the background, so requests that need
//! Postgres fail at once while it is down instead of each waiting out the
//! pool's acquire timeout, and flow again as soon as a probe succeeds.
//!
//! The order hot path never needs Postgres (the ticket cache serves it), so it
//! is not gated: orders keep being accepted while the database is away.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::Method;
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

/// Routes that cannot answer without Postgres: order reads and admin writes. Catalog
/// reads are served from the ticket cache and keep answering with the last known stock.
pub fn needs_postgres(method: &Method, path: &str) -> bool {
    let reads = *method == Method::GET && (path.starts_with("/v1/orders") || path.starts_with("/v1/users/"));
    let admin_writes = *method == Method::POST && path == "/v1/tickets";
    reads || admin_writes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_hot_path_is_never_gated() {
        assert!(!needs_postgres(&Method::POST, "/v1/orders"));
        assert!(needs_postgres(&Method::GET, "/v1/orders/abc"));
        assert!(!needs_postgres(&Method::GET, "/v1/tickets"), "the catalog is served from the cache");
        assert!(needs_postgres(&Method::POST, "/v1/tickets"));
        assert!(!needs_postgres(&Method::GET, "/healthz"));
    }
}
