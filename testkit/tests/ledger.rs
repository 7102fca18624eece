//! The Postgres tallies and verdicts against real databases: a deliberately oversold one
//! must be caught, and a correct one must pass.

use chrono::Utc;
use sqlx::PgPool;
use tps_testkit::ledger::{TicketDemand, order_tally};
use tps_testkit::verdict::order_verdicts;
use uuid::Uuid;

async fn fresh_db(pg: &tps_testkit::Postgres) -> PgPool {
    let url = pg.create_database().await.unwrap();
    let pool = tps_runtime::db::connect(&url, 4).await.unwrap();
    tps_runtime::db::migrate(&pool).await.unwrap();
    pool
}

async fn ticket(pool: &PgPool, total: i32, available: i32) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query("INSERT INTO tickets (id, name, price_cents, total_quantity, available) VALUES ($1, 'gig', 100, $2, $3)")
        .bind(id)
        .bind(total)
        .bind(available)
        .execute(pool)
        .await
        .unwrap();
    id
}

/// Inserts `n` settled orders of quantity 1 and returns their ids.
async fn orders(pool: &PgPool, ticket: Uuid, n: usize, status: &str) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = Uuid::new_v4();
        let reason = (status == "REJECTED").then_some("SOLD_OUT");
        sqlx::query(
            "INSERT INTO orders (id, user_id, ticket_id, quantity, status, reason, idempotency_key, stream_seq, created_at) \
             VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(format!("user-{i}"))
        .bind(ticket)
        .bind(status)
        .bind(reason)
        .bind(format!("key-{id}"))
        .bind(i as i64)
        .bind(Utc::now())
        .execute(pool)
        .await
        .unwrap();
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn an_oversold_database_is_caught_and_a_correct_one_passes() {
    let pg = tps_testkit::Postgres::start().await.unwrap();

    // Oversold: 12 confirmed orders for a stock of 10. The CHECK on `available`
    // only guards the tickets row, so the orders rows can say more than the stock.
    let bad = fresh_db(&pg).await;
    let t = ticket(&bad, 10, 0).await;
    let accepted = orders(&bad, t, 12, "CONFIRMED").await;
    let tally = order_tally(&bad, &[TicketDemand { id: t, demand: 12 }], &accepted, 0, 1).await.unwrap();
    assert_eq!(tally.tickets[0].sold, 12);
    let verdicts = order_verdicts(&tally);
    let failed: Vec<_> = verdicts.iter().filter(|v| !v.ok).map(|v| v.check).collect();
    assert!(failed.contains(&"oversold"), "oversold database passed: {verdicts:?}");

    // Correct: 10 confirmed, 2 rejected, available 0.
    let good = fresh_db(&pg).await;
    let t = ticket(&good, 10, 0).await;
    let mut accepted = orders(&good, t, 10, "CONFIRMED").await;
    accepted.extend(orders(&good, t, 2, "REJECTED").await);
    let tally = order_tally(&good, &[TicketDemand { id: t, demand: 12 }], &accepted, 0, 1).await.unwrap();
    let verdicts = order_verdicts(&tally);
    assert!(verdicts.iter().all(|v| v.ok), "correct database failed: {verdicts:?}");
}

#[tokio::test]
async fn lost_duplicate_and_phantom_rows_are_caught() {
    let pg = tps_testkit::Postgres::start().await.unwrap();
    let pool = fresh_db(&pg).await;
    let t = ticket(&pool, 10, 8).await;
    let mut accepted = orders(&pool, t, 2, "CONFIRMED").await;
    // A 202'd order that never reached the table.
    accepted.push(Uuid::new_v4());
    // A row nobody acknowledged, and a second row for an existing (user, key).
    let phantom = orders(&pool, t, 1, "REJECTED").await[0];
    sqlx::query("UPDATE orders SET user_id = 'user-0', idempotency_key = (SELECT idempotency_key FROM orders WHERE id = $1) WHERE id = $2")
        .bind(accepted[0])
        .bind(phantom)
        .execute(&pool)
        .await
        .unwrap();
    let tally = order_tally(&pool, &[TicketDemand { id: t, demand: 3 }], &accepted, 0, 1).await.unwrap();
    assert_eq!((tally.lost, tally.duplicates, tally.phantom), (1, 1, Some((1, 0))));
    let failed: Vec<_> = order_verdicts(&tally).into_iter().filter(|v| !v.ok).map(|v| v.check).collect();
    assert_eq!(failed, ["lost", "duplicates", "phantom"]);
}

async fn user(pool: &PgPool, email: &str, status: &str) -> Uuid {
    let id = Uuid::new_v4();
    let reason = (status == "REJECTED").then_some("DUPLICATE_EMAIL");
    sqlx::query(
        "INSERT INTO users (id, status, reason, name, email, age, score, active, country, team_name, team_leader, fingerprint, stream_seq, created_at) \
         VALUES ($1, $2, $3, 'n', $4, 30, 1.0, true, 'SE', 't', false, 'fp', 1, now())",
    )
    .bind(id)
    .bind(status)
    .bind(reason)
    .bind(email)
    .execute(pool)
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn sign_ups_rejected_for_their_email_pass_and_an_email_created_twice_or_a_lost_user_is_caught() {
    use tps_testkit::ledger::user_tally;
    use tps_testkit::verdict::user_verdicts;
    let pg = tps_testkit::Postgres::start().await.unwrap();

    // Correct: one CREATED per email; the refused one keeps its email in another case.
    let good = fresh_db(&pg).await;
    let created = user(&good, "a@example.test", "CREATED").await;
    let refused = user(&good, "A@Example.TEST", "REJECTED").await;
    let tally = user_tally(&good, &[created, refused], &[created]).await.unwrap().unwrap();
    assert_eq!((tally.lost, tally.duplicates), (0, 0));
    assert!(user_verdicts(&tally).iter().all(|v| v.ok));

    // Broken: the unique index gone, one email CREATED twice, and a CREATED id with no row.
    let bad = fresh_db(&pg).await;
    sqlx::query("DROP INDEX users_email_key_unique").execute(&bad).await.unwrap();
    let first = user(&bad, "b@example.test", "CREATED").await;
    let second = user(&bad, "B@example.test", "CREATED").await;
    let phantom = Uuid::new_v4();
    let tally =
        user_tally(&bad, &[first, second, phantom], &[first, second, phantom]).await.unwrap().unwrap();
    assert_eq!((tally.lost, tally.duplicates), (1, 1));
    assert_eq!(user_verdicts(&tally).iter().filter(|v| !v.ok).count(), 2);
}
