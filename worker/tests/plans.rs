//! Statements keep up with a growing table: a pool whose plans were made on a small table
//! must not keep the sequential-scan plan it made then (see `tps_runtime::db::connect`).

use sqlx::Row;
use tps_testkit::Stack;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_lookup_planned_on_a_small_table_uses_the_primary_key_once_it_grows() {
    let stack = Stack::start().await.unwrap();
    // One connection, so that every statement below runs on the one that cached its plan.
    let pool = tps_runtime::db::connect(&stack.database_url, 1).await.unwrap();
    tps_runtime::db::migrate(&pool).await.unwrap();
    let lookup = "SELECT id, user_id, ticket_id, quantity, created_at FROM orders WHERE id = ANY($1)";
    let ids = |n: usize| (0..n).map(|_| Uuid::new_v4()).collect::<Vec<_>>();
    let ticket = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO tickets (id, name, total_quantity, available, price_cents, max_per_order) \
         VALUES ($1, 'plan test', 100, 100, 100, 5)",
    )
    .bind(ticket)
    .execute(&pool)
    .await
    .unwrap();
    let insert = |from: i32, to: i32| {
        sqlx::query(
            "INSERT INTO orders (id, user_id, ticket_id, quantity, status, idempotency_key, stream_seq, created_at) \
             SELECT gen_random_uuid(), 'u' || g, $1, 1, 'CONFIRMED', 'k' || g, g, now() FROM generate_series($2, $3) g",
        )
        .bind(ticket)
        .bind(from)
        .bind(to)
        .execute(&pool)
    };
    // The first orders of a sale, as autovacuum's first ANALYZE (after 50 rows) sees them.
    insert(1, 100).await.unwrap();
    sqlx::query("ANALYZE orders").execute(&pool).await.unwrap();
    // Planned (past the generic-plan threshold of five executions) on the one-page table.
    for _ in 0..10 {
        assert!(sqlx::query(lookup).bind(ids(3)).fetch_all(&pool).await.unwrap().is_empty());
    }
    // The sale goes on: the next ANALYZE is up to a minute away.
    insert(101, 20_000).await.unwrap();

    // The lookup, and the scans it made, in one transaction on that connection.
    let mut tx = pool.begin().await.unwrap();
    let before: i64 = scans(&mut tx).await;
    for _ in 0..5 {
        sqlx::query(lookup).bind(ids(3)).fetch_all(&mut *tx).await.unwrap();
    }
    let after: i64 = scans(&mut tx).await;
    tx.rollback().await.unwrap();
    assert_eq!(after - before, 0, "the id lookup read the whole table: a plan made while it was empty");
}

async fn scans(tx: &mut sqlx::PgConnection) -> i64 {
    sqlx::query("SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'orders'")
        .fetch_one(tx)
        .await
        .unwrap()
        .get("seq_scan")
}
