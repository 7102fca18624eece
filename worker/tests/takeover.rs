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
        h.assert_first_come_first_served(*t).await;
    }
    let distinct: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT id) FROM orders").fetch_one(&h.pool).await.unwrap();
    assert_eq!(distinct, published);
    // Takeover needs the lease ttl (1.5 s) plus the dead worker's unacked batch's ack_wait (4 s).
    assert!(took < Duration::from_secs(20), "settling after the kill took {took:?}");
}

/// First come, first served across a `kill -9`: the owner of the shard is killed while
/// it holds a pulled, unacked batch (the `stall-before-settle` failpoint keeps it there),
/// and orders keep arriving. The next owner must settle that batch before anything newer,
/// not leave it to come back after `ack_wait` (60 s here) and find the stock gone:
/// on each ticket, no SOLD_OUT order arrived before a CONFIRMED one, and nothing waits
/// out `ack_wait`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_owner_settles_the_dead_owner_s_batch_before_anything_newer() {
    const ACK_WAIT: Duration = Duration::from_secs(60);
    let h = Harness::start_with_ack_wait(1, ACK_WAIT).await;
    let tickets = [h.ticket_on(0, 100, 1).await, h.ticket_on(0, 100, 1).await];
    // The first 60 of each ticket: the batch the doomed owner takes and holds.
    let first: Vec<_> = (0..60).flat_map(|_| tickets.map(|t| order(t, 1))).collect();
    h.publish(&first).await;
    let mut doomed =
        h.worker_process("doomed", &[("TPS_FAILPOINT", "stall-before-settle"), ("BATCH_SIZE", "500")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while held(&h).await.is_none_or(|n| n != first.len()) {
        assert!(doomed.is_running(), "the doomed worker died:\n{}", doomed.log_tail(3000));
        assert!(Instant::now() < deadline, "the batch was never held:\n{}", doomed.log_tail(3000));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut heir = h.worker_process("heir", &[("BATCH_SIZE", "50")]);

    // Under load: orders keep coming before, during and after the kill (demand 160 > stock 100 per ticket).
    let publisher = {
        let (js, shards) = (h.js.clone(), h.shards);
        tokio::spawn(async move {
            let mut n = 0;
            for wave in 0..10 {
                let commands: Vec<_> = (0..10).flat_map(|_| tickets.map(|t| order(t, 1))).collect();
                for c in &commands {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(tps_contract::subject::MSG_ID_HEADER, c.order_id.to_string().as_str());
                    let subject =
                        tps_contract::subject::order_subject(tps_contract::shard_for(&c.ticket_id, shards));
                    js.publish_with_headers(subject, headers, serde_json::to_vec(c).unwrap().into())
                        .await
                        .unwrap()
                        .await
                        .unwrap();
                }
                n += commands.len();
                tokio::time::sleep(Duration::from_millis(if wave < 3 { 100 } else { 300 })).await;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    doomed.kill();
    let killed_at = Instant::now();
    let published = first.len() + publisher.await.unwrap();

    h.wait_settled(published as i64, Duration::from_secs(45)).await;
    let took = killed_at.elapsed();
    assert!(heir.is_running(), "the heir died:\n{}", heir.log_tail(3000));
    for t in tickets {
        let (confirmed, sold_out) = h.assert_first_come_first_served(t).await;
        assert_eq!((confirmed, sold_out), (100, 60), "ticket {t}: exactly its stock sold, every order final");
        assert_eq!(h.available(t).await, 0, "nothing oversold, nothing left");
        let held_first: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM orders WHERE ticket_id = $1 AND status = 'CONFIRMED' AND id = ANY($2)",
        )
        .bind(t)
        .bind(first.iter().map(|c| c.order_id).collect::<Vec<_>>())
        .fetch_one(&h.pool)
        .await
        .unwrap();
        assert_eq!(held_first, 60, "ticket {t}: every order of the held batch was served first");
    }
    assert!(
        took < ACK_WAIT - Duration::from_secs(15),
        "settling after the kill took {took:?}: the held batch waited out ack_wait"
    );
    drop(heir);
}

/// Messages delivered on the only shard's consumer and not acked, once pending is quiet.
async fn held(h: &Harness) -> Option<usize> {
    let mut c: async_nats::jetstream::consumer::PullConsumer =
        h.js.get_consumer_from_stream(
            tps_contract::subject::consumer_name(tps_contract::subject::ORDERS_STREAM, 0),
            tps_contract::subject::ORDERS_STREAM,
        )
        .await
        .ok()?;
    let info = c.info().await.ok()?;
    (info.num_pending == 0).then_some(info.num_ack_pending)
}
