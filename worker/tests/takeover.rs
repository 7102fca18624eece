//! Worker processes share the shards; one is killed -9 mid-flood and the others
//! take its shards over within seconds; the books balance exactly.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, order};

const SHARDS: u32 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_shards_are_taken_over_and_nothing_is_lost_or_doubled() {
    let h = Harness::start(SHARDS).await;
    let mut tickets = Vec::new();
    for shard in 0..SHARDS {
        tickets.push(h.ticket_on(shard, 150, 2).await);
    }
    let mut workers: Vec<_> =
        (0..3).map(|i| h.worker_process(&format!("w{i}"), &[("BATCH_SIZE", "40")])).collect();

    // The flood: 6 waves of 100 orders per ticket (demand 900 > stock 150 each).
    let mut published = 0;
    let mut killed_at = None;
    for wave in 0..6 {
        let commands: Vec<_> =
            tickets.iter().flat_map(|t| (0..100).map(move |i| order(*t, 1 + (i + wave) % 2))).collect();
        h.publish(&commands).await;
        published += commands.len() as i64;
        if wave == 2 {
            workers[0].kill();
            killed_at = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let killed_at = killed_at.unwrap();
    h.wait_settled(published, Duration::from_secs(45)).await;
    let took = killed_at.elapsed();
    h.wait_drained(Duration::from_secs(20)).await;
    for w in workers.iter_mut().skip(1) {
        assert!(w.is_running(), "survivor died:\n{}", w.log_tail(3000));
    }

    // Every shard's fence moved to a live owner, and the books balance.
    let owners: Vec<String> = sqlx::query_scalar("SELECT owner FROM shard_fences WHERE stream = 'ORDERS'")
        .fetch_all(&h.pool)
        .await
        .unwrap();
    assert_eq!(owners.len(), SHARDS as usize);
    assert!(owners.iter().all(|o| !o.starts_with("w0-")), "a dead worker still owns a shard: {owners:?}");
    let sold = common::sold(&h.pool).await;
    for t in &tickets {
        assert_eq!(sold[t], 150, "ticket {t} sold exactly its stock");
        assert_eq!(h.available(*t).await, 0);
    }
    let distinct: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT id) FROM orders").fetch_one(&h.pool).await.unwrap();
    assert_eq!(distinct, published);
    // Takeover needs the lease ttl (1.5 s) plus the dead worker's unacked batch's ack_wait (4 s).
    assert!(took < Duration::from_secs(20), "settling after the kill took {took:?}");
}
