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
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse::<PgConnectOptions>()?.disable_statement_logging();
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
