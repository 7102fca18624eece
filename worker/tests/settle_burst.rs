//! A burst of orders is settled exactly: stock sold out, never beyond, in arrival
//! order; duplicates and redeliveries change nothing.

mod common;

use std::time::Duration;

use common::{Harness, InProcess, order};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_sells_exactly_the_stock_in_arrival_order() {
    let h = Harness::start(4).await;
    const N: i32 = 200;
    let hot = h.ticket_on(0, N, 4).await;
    let others = [h.ticket_on(1, 50, 4).await, h.ticket_on(2, 50, 4).await];
    let mut commands: Vec<_> = (0..3 * N as u32).map(|i| order(hot, 1 + i % 4)).collect();
    for t in others {
        commands.extend((0..100).map(|i| order(t, 1 + i % 3)));
    }
    h.publish(&commands).await;

    let worker = InProcess::start(h.config(&["--batch-size=64"]));
    h.wait_settled(commands.len() as i64, Duration::from_secs(30)).await;
    worker.stop().await;

    h.assert_exact(hot, N.into()).await;
    assert_eq!(h.available(hot).await, 0, "demand exceeded stock, so all of it is sold");
    let rows = h.orders_of(hot).await;
    assert_eq!(rows.len(), 3 * N as usize);
    assert!(rows[..10].iter().all(|r| r.2 == "CONFIRMED"), "the first come are the first served");
    for t in others {
        h.assert_exact(t, 50).await;
        assert_eq!(h.available(t).await, 0);
    }
    let sold = common::sold(&h.pool).await;
    assert_eq!(sold[&hot], i64::from(N));
    let distinct: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT id) FROM orders").fetch_one(&h.pool).await.unwrap();
    assert_eq!(distinct, commands.len() as i64);
    let unprocessed: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE processed_at < created_at")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(unprocessed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_and_redeliveries_make_one_order_and_one_decrement() {
    let h = Harness::start(2).await;
    let ticket = h.ticket_on(1, 10, 5).await;
    let twice = order(ticket, 3);
    // Same Nats-Msg-Id (JetStream drops it), then a new Nats-Msg-Id for the same
    // order (as after the dedup window): the primary key must catch it, even in one batch.
    h.publish(&[twice.clone(), twice.clone()]).await;
    h.publish_as(&twice, "after-the-window-1").await.await.unwrap();
    let worker = InProcess::start(h.config(&[]));
    h.wait_settled(1, Duration::from_secs(20)).await;
    h.wait_drained(Duration::from_secs(20)).await;
    // Once more, long after it settled: a separate batch that finds the row.
    h.publish_as(&twice, "after-the-window-2").await.await.unwrap();
    h.wait_drained(Duration::from_secs(20)).await;
    worker.stop().await;

    assert_eq!(h.settled().await, 1);
    assert_eq!(h.available(ticket).await, 7, "one decrement of 3");
    h.assert_exact(ticket, 10).await;
}

/// The same order id reaching two shards (same user and key, another ticket: possible
/// once Redis lost the claim and JetStream's de-duplication window has passed) makes
/// one order and takes stock once in total, whether the shards settle it one after the
/// other or race for it; the grants around it still follow arrival order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_id_on_two_shards_makes_one_order_and_one_decrement() {
    let h = Harness::start(2).await;
    let (a, b) = (h.ticket_on(0, 40, 5).await, h.ticket_on(1, 40, 5).await);

    // One after the other: shard 0 settles it, then it comes again on shard 1.
    let worker = InProcess::start(h.config(&[]));
    let first = order(a, 3);
    h.publish(std::slice::from_ref(&first)).await;
    h.wait_settled(1, Duration::from_secs(20)).await;
    let again = tps_contract::OrderCommand { ticket_id: b, ..first.clone() };
    h.publish_as(&again, "another-shard-later").await.await.unwrap();
    h.wait_drained(Duration::from_secs(20)).await;
    worker.stop().await;
    assert_eq!(h.settled().await, 1);
    assert_eq!(
        (h.available(a).await, h.available(b).await),
        (37, 40),
        "stock taken once, on the row's ticket"
    );

    // A race: 30 ids each sent to both shards among other orders. Both shards read
    // "not settled yet" and then wait for their ticket (held here); shard 0 commits
    // first, then shard 1 goes on with what it read.
    let mut commands = Vec::new();
    for i in 0..30u32 {
        commands.push(order(a, 1 + i % 3));
        commands.push(order(b, 1 + i % 2));
        let twin = order(a, 2);
        commands.push(twin.clone());
        commands.push(tps_contract::OrderCommand { ticket_id: b, ..twin });
    }
    let hold_a = hold(&h, a).await;
    let hold_b = hold(&h, b).await;
    let mut acks = Vec::new();
    for (i, c) in commands.iter().enumerate() {
        acks.push(h.publish_as(c, &format!("race-{i}")).await);
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let worker = InProcess::start(h.config(&["--batch-size=200"]));
    wait_for_lock_waiters(&h, 2).await;
    hold_a.commit().await.unwrap();
    let on_a = 1 + commands.iter().filter(|c| c.ticket_id == a).count() as i64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE ticket_id = $1")
            .bind(a)
            .fetch_one(&h.pool)
            .await
            .unwrap();
        if n == on_a {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "shard 0 settled {n} of {on_a}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hold_b.commit().await.unwrap();
    let distinct = 1 + commands.len() as i64 - 30;
    h.wait_settled(distinct, Duration::from_secs(30)).await;
    h.wait_drained(Duration::from_secs(30)).await;
    worker.stop().await;

    assert_eq!(h.settled().await, distinct, "one row per order id");
    // Each ticket's stock is exactly what its own rows confirmed, in arrival order.
    h.assert_exact(a, 40).await;
    h.assert_exact(b, 40).await;
    assert_eq!((h.available(a).await, h.available(b).await), (0, 0), "demand exceeded stock on both");
    let sold = common::sold(&h.pool).await;
    assert_eq!(
        (sold[&a], sold[&b]),
        (40, 40),
        "stock taken once per confirmed row, never for a skipped twin"
    );
}

/// A transaction holding a ticket's row lock, as a slow settling transaction would.
async fn hold(h: &Harness, ticket: uuid::Uuid) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = h.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM tickets WHERE id = $1 FOR UPDATE")
        .bind(ticket)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

/// Waits until `n` sessions wait for a lock.
async fn wait_for_lock_waiters(h: &Harness, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                .fetch_one(&h.pool)
                .await
                .unwrap();
        if waiting >= n {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{waiting} of {n} settling transactions waiting");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
