//! Postgres: the pool and the migrations, which every binary applies at start.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

/// The schema, embedded. sqlx takes a Postgres advisory lock while migrating,
/// so several pods starting at once apply each migration exactly once.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Opens a pool with bounded connect and acquire timeouts, so a dead database
/// fails requests fast instead of hanging them.
///
/// Every statement is planned for its parameters (`plan_cache_mode =
/// force_custom_plan`). sqlx prepares each statement once per connection, and after
/// five executions Postgres may keep one generic plan for it. A pool opened on a fresh
/// database plans `WHERE id = ANY($1)` while `orders` is empty, where a sequential scan
/// is cheapest, and keeps that plan while the table grows, until an autoanalyze: on a
/// fresh stack every key lookup then read the whole table (measured: 994 sequential
/// scans of up to 40,000 rows in a 40,000-order sale, 10 ms each, Postgres the busiest
/// process). A custom plan sees the table's real size and takes the primary key; its
/// planning costs tens of µs per statement.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url
        .parse::<PgConnectOptions>()?
        .options([("plan_cache_mode", "force_custom_plan")])
        .disable_statement_logging();
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(options)
        .await
}

/// Applies every pending migration under the advisory lock.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
