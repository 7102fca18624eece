//! Batches of several shards settled in one transaction (`settling::combine`): a stale
//! shard is left out, batches that wait share the next transaction, and a combined
//! transaction that fails sends every batch to settle alone.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use common::{Harness, order};
use futures::{StreamExt, poll};
use sqlx::PgPool;
use tps_contract::event::{MAX_EVENTS_PER_MESSAGE, decode_events};
use tps_contract::subject::{ORDER_EVENTS, ORDERS_STREAM, StreamNames, TICKET_EVENTS};
use tps_contract::{OrderCommand, OrderStatus, OrderUpdated, TicketUpdated};
use tps_worker::failpoint::Failpoint;
use tps_worker::orders::Orders;
use tps_worker::ownership::fence;
use tps_worker::settling::combine::{Batch, Combiner, IN_FLIGHT, Reply, Settler};
use tps_worker::settling::command_kind::{Delivery, SettleError};
use uuid::Uuid;

const SHARDS: u32 = 4;

async fn settler(h: &Harness) -> Settler<Orders> {
    Settler {
        kind: Orders,
        pool: h.pool.clone(),
        nats: async_nats::connect(h.stack.nats.url()).await.unwrap(),
        names: StreamNames::default(),
        failpoint: Failpoint::None,
    }
}

/// Writes `token` into the fence of every shard.
async fn own_all(pool: &PgPool, token: i64) {
    for shard in 0..SHARDS {
        fence::claim(pool, ORDERS_STREAM, shard, token, "test").await.unwrap();
    }
}

fn deliveries(commands: &[OrderCommand], first_seq: u64) -> Vec<Delivery<OrderCommand>> {
    commands
        .iter()
        .enumerate()
        .map(|(i, c)| Delivery { message: None, seq: first_seq + i as u64, delivered: 1, command: c.clone() })
        .collect()
}

/// The distinct commit clocks of `orders`' rows: one per transaction that settled them.
async fn transactions_of(pool: &PgPool, orders: &[OrderCommand]) -> (i64, i64) {
    let ids: Vec<Uuid> = orders.iter().map(|o| o.order_id).collect();
    sqlx::query_as("SELECT count(*), count(DISTINCT processed_at) FROM orders WHERE id = ANY($1)")
        .bind(ids)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits until `n` sessions wait for a lock (our combined transactions, held at the fence).
async fn until_waiting_for_locks(pool: &PgPool, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting == n {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{waiting} sessions wait for a lock, not {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Holds shard 0's fence row, then hands in `batches` (one per transaction slot, all of
/// shard 0), each once the one before waits at that fence: every slot is then taken, and a
/// batch handed in next waits for the next transaction. Roll back the returned transaction
/// to let them all go.
async fn take_every_slot<'a>(
    h: &Harness,
    combiner: &'a Combiner<OrderCommand>,
    token: i64,
    batches: &'a [Vec<Delivery<OrderCommand>>],
) -> (sqlx::Transaction<'static, sqlx::Postgres>, Vec<Pending<'a>>) {
    assert_eq!(batches.len(), IN_FLIGHT);
    let mut holder = h.pool.begin().await.unwrap();
    sqlx::query("SELECT token FROM shard_fences WHERE stream = $1 AND shard = 0 FOR UPDATE")
        .bind(ORDERS_STREAM)
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    let mut pending = Vec::new();
    for (i, batch) in batches.iter().enumerate() {
        pending.push(hand_in(combiner, 0, token, batch).await);
        until_waiting_for_locks(&h.pool, i as i64 + 1).await;
    }
    (holder, pending)
}

type Pending<'a> = Pin<Box<dyn Future<Output = Option<Reply>> + Send + 'a>>;

/// Hands a batch to the combiner and returns its pending answer (the batch is queued by
/// the first poll, which this does).
async fn hand_in<'a>(
    combiner: &'a Combiner<OrderCommand>,
    shard: u32,
    token: i64,
    batch: &'a [Delivery<OrderCommand>],
) -> Pending<'a> {
    let mut pending: Pending<'a> = Box::pin(combiner.settle(shard, token, batch));
    assert!(poll!(&mut pending).is_pending(), "a batch is answered after its transaction");
    pending
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_whose_fence_moved_on_is_left_out_and_the_others_commit() {
    let h = Harness::start(SHARDS).await;
    own_all(&h.pool, 7).await;
    let (t0, t1) = (h.ticket_on(0, 10, 4).await, h.ticket_on(1, 10, 4).await);
    let ours: Vec<_> = (0..3).map(|_| order(t0, 1)).collect();
    let stale: Vec<_> = (0..3).map(|_| order(t1, 1)).collect();
    // A batch of shard 0 still waiting under its runner's older token.
    let older: Vec<_> = (0..2).map(|_| order(t0, 1)).collect();
    // Shard 1 has a newer owner.
    fence::claim(&h.pool, ORDERS_STREAM, 1, 8, "newer").await.unwrap();

    let kept = settler(&h)
        .await
        .settle_together(vec![
            Batch { shard: 0, token: 7, batch: deliveries(&ours, 1) },
            Batch { shard: 1, token: 7, batch: deliveries(&stale, 4) },
            Batch { shard: 0, token: 6, batch: deliveries(&older, 7) },
        ])
        .await
        .unwrap();

    assert_eq!(kept, [true, false, false]);
    assert_eq!(transactions_of(&h.pool, &older).await, (0, 0), "nothing under a token the fence moved past");
    assert_eq!(transactions_of(&h.pool, &ours).await, (3, 1), "shard 0's batch committed");
    assert_eq!(transactions_of(&h.pool, &stale).await, (0, 0), "nothing of the fenced shard");
    assert_eq!(h.available(t0).await, 7);
    assert_eq!(h.available(t1).await, 10, "the fenced shard's stock is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_id_in_two_shards_batches_is_the_earlier_one_in_the_stream() {
    let h = Harness::start(SHARDS).await;
    own_all(&h.pool, 2).await;
    let (t0, t1) = (h.ticket_on(0, 10, 4).await, h.ticket_on(1, 10, 4).await);
    // The same key sent twice with another ticket (Redis lost the claim, past the
    // de-duplication window): one order id on two shards, shard 0's earlier in the stream.
    let earlier = order(t0, 1);
    let later = OrderCommand { ticket_id: t1, ..earlier.clone() };

    let kept = settler(&h)
        .await
        .settle_together(vec![
            Batch { shard: 1, token: 2, batch: deliveries(std::slice::from_ref(&later), 20) },
            Batch { shard: 0, token: 2, batch: deliveries(std::slice::from_ref(&earlier), 10) },
        ])
        .await
        .unwrap();

    assert_eq!(kept, [true, true]);
    let ticket: Uuid = sqlx::query_scalar("SELECT ticket_id FROM orders WHERE id = $1")
        .bind(earlier.order_id)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(ticket, t0, "the first in the stream is the order");
    assert_eq!((h.available(t0).await, h.available(t1).await), (9, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_that_wait_for_a_transaction_share_the_next_one() {
    let h = Harness::start(SHARDS).await;
    own_all(&h.pool, 3).await;
    let mut tickets = Vec::new();
    for shard in 0..SHARDS {
        tickets.push(h.ticket_on(shard, 100, 4).await);
    }
    let combiner = Combiner::spawn(settler(&h).await, 1_000);

    let first: Vec<Vec<_>> = (0..IN_FLIGHT).map(|_| vec![order(tickets[0], 1)]).collect();
    let first_batches: Vec<_> = first.iter().enumerate().map(|(i, o)| deliveries(o, 1 + i as u64)).collect();
    let later: Vec<Vec<_>> =
        (1..SHARDS as usize).map(|s| (0..5).map(|_| order(tickets[s], 1)).collect()).collect();
    let later_batches: Vec<_> =
        later.iter().enumerate().map(|(i, o)| deliveries(o, 100 + 10 * i as u64)).collect();
    // Shard 0's fence held, so the transactions that take shard 0's batches wait for it.
    let (holder, mut pending) = take_every_slot(&h, &combiner, 3, &first_batches).await;
    // Every transaction slot is now held at the fence: these three wait, together.
    for (i, batch) in later_batches.iter().enumerate() {
        pending.push(hand_in(&combiner, 1 + i as u32, 3, batch).await);
    }
    holder.rollback().await.unwrap();

    for answer in pending {
        let answer = tokio::time::timeout(Duration::from_secs(20), answer).await.unwrap();
        assert!(matches!(answer, Some(Reply::Settled)), "{answer:?}");
    }
    let later_orders: Vec<OrderCommand> = later.concat();
    assert_eq!(
        transactions_of(&h.pool, &later_orders).await,
        (15, 1),
        "the three batches that waited committed in one transaction"
    );
    for ticket in &tickets[1..] {
        assert_eq!(h.available(*ticket).await, 95);
    }
    assert_eq!(h.available(tickets[0]).await, 100 - IN_FLIGHT as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_combined_transaction_that_fails_commits_nothing_and_sends_each_batch_alone() {
    let h = Harness::start(SHARDS).await;
    own_all(&h.pool, 5).await;
    let (t0, t1, t2) =
        (h.ticket_on(0, 10, 4).await, h.ticket_on(1, 10, 4).await, h.ticket_on(2, 10, 4).await);
    let combiner = Combiner::spawn(settler(&h).await, 1_000);

    let blockers: Vec<_> = (0..IN_FLIGHT).map(|i| deliveries(&[order(t0, 1)], 1 + i as u64)).collect();
    let (holder, first) = take_every_slot(&h, &combiner, 5, &blockers).await;
    // Postgres refuses a NUL in text: this batch fails wherever it is settled.
    let mut cursed = order(t1, 1);
    cursed.user_id = "nul\u{0}user".into();
    let good = vec![order(t2, 2)];
    let (cursed_batch, good_batch) = (deliveries(&[cursed.clone()], 50), deliveries(&good, 60));
    let poisoned = hand_in(&combiner, 1, 5, &cursed_batch).await;
    let innocent = hand_in(&combiner, 2, 5, &good_batch).await;
    holder.rollback().await.unwrap();

    for answer in first {
        assert!(matches!(answer.await, Some(Reply::Settled)));
    }
    let wait = |f| tokio::time::timeout(Duration::from_secs(20), f);
    assert!(matches!(wait(poisoned).await.unwrap(), Some(Reply::Alone)));
    assert!(matches!(wait(innocent).await.unwrap(), Some(Reply::Alone)));
    assert_eq!(transactions_of(&h.pool, &good).await, (0, 0), "the failed transaction committed nothing");
    assert_eq!(h.available(t2).await, 10);

    // Alone, the good batch settles, and the poisoned one reports its own error.
    let s = settler(&h).await;
    let good_alone = s
        .settle_together(vec![Batch {
            shard: 2,
            token: 5,
            batch: good_batch.iter().map(Delivery::detached).collect(),
        }])
        .await;
    assert_eq!(good_alone.unwrap(), [true]);
    assert_eq!(h.available(t2).await, 8);
    let cursed_alone = s
        .settle_together(vec![Batch {
            shard: 1,
            token: 5,
            batch: cursed_batch.iter().map(Delivery::detached).collect(),
        }])
        .await;
    assert!(matches!(cursed_alone, Err(SettleError::Fatal(_))), "{cursed_alone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_announces_its_orders_and_its_stock_in_a_few_messages_not_one_per_order() {
    let h = Harness::start(SHARDS).await;
    own_all(&h.pool, 5).await;
    let (t0, t1) = (h.ticket_on(0, 1_000, 4).await, h.ticket_on(1, 1_000, 4).await);
    let on_t0: Vec<_> = (0..200).map(|_| order(t0, 1)).collect();
    let on_t1: Vec<_> = (0..100).map(|_| order(t1, 2)).collect();
    let nats = async_nats::connect(h.stack.nats.url()).await.unwrap();
    let mut order_events = nats.subscribe(ORDER_EVENTS).await.unwrap();
    let mut ticket_events = nats.subscribe(TICKET_EVENTS).await.unwrap();
    nats.flush().await.unwrap();

    // Kept alive to the end: the worker's client outlives its announces.
    let settler = settler(&h).await;
    let kept = settler
        .settle_together(vec![
            Batch { shard: 0, token: 5, batch: deliveries(&on_t0, 1) },
            Batch { shard: 1, token: 5, batch: deliveries(&on_t1, 1_000) },
        ])
        .await
        .unwrap();
    assert_eq!(kept, [true, true]);

    // 300 orders: two messages (256 + 44), every order once, each with its outcome.
    let mut seen = std::collections::HashMap::new();
    let mut messages = Vec::new();
    while seen.len() < 300 {
        let m = tokio::time::timeout(Duration::from_secs(10), order_events.next())
            .await
            .unwrap_or_else(|_| panic!("every order announced; {} seen", seen.len()))
            .unwrap();
        let events: Vec<OrderUpdated> = decode_events(&m.payload).unwrap();
        messages.push(events.len());
        for e in events {
            assert_eq!(e.order.status, OrderStatus::Confirmed);
            assert!(seen.insert(e.order.id, e.user_id).is_none(), "announced once");
        }
    }
    assert_eq!(messages, [MAX_EVENTS_PER_MESSAGE, 300 - MAX_EVENTS_PER_MESSAGE]);
    for o in on_t0.iter().chain(&on_t1) {
        assert_eq!(seen.get(&o.order_id), Some(&o.user_id), "to its owner");
    }
    // Both tickets' stock after the commit, in one message.
    let m = tokio::time::timeout(Duration::from_secs(10), ticket_events.next()).await.unwrap().unwrap();
    let mut stock: Vec<TicketUpdated> = decode_events(&m.payload).unwrap();
    stock.sort_by_key(|t| t.ticket_id);
    let mut expected = vec![
        TicketUpdated { ticket_id: t0, available: 800, sold_out: false },
        TicketUpdated { ticket_id: t1, available: 800, sold_out: false },
    ];
    expected.sort_by_key(|t| t.ticket_id);
    assert_eq!(stock, expected);
    assert_eq!((h.available(t0).await, h.available(t1).await), (800, 800), "as announced");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), order_events.next()).await.is_err(),
        "nothing more"
    );
}
