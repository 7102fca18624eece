//! A 3-node JetStream cluster on loopback, streams at 3 replicas: the ORDERS stream's leader
//! is killed with SIGKILL in the middle of a flash sale. No 202 may be lost, every accepted
//! order ends final, and nothing is oversold.

use std::time::Duration;

use async_nats::jetstream;
use tps_e2e::{Buyers, create_ticket, settle_and_check};
use tps_testkit::{AppProcess, Stack};

const SHARDS: u32 = 4;
const STOCK: u32 = 1_500;

/// The ORDERS stream's leader and replica count, as a node that is still up reports them.
async fn orders_leader(stack: &Stack) -> Option<(String, usize)> {
    for node in stack.nats_nodes() {
        let Ok(Ok(client)) =
            tokio::time::timeout(Duration::from_secs(2), async_nats::connect(node.url())).await
        else {
            continue;
        };
        let js = jetstream::new(client);
        let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(2), js.get_stream("ORDERS")).await
        else {
            continue;
        };
        if let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(2), stream.info()).await
            && let Some(cluster) = info.cluster.clone()
            && let Some(leader) = cluster.leader
        {
            return Some((leader, info.config.num_replicas));
        }
    }
    None
}

/// Messages stored in ORDERS so far (its last sequence).
async fn orders_stored(stack: &Stack) -> u64 {
    let Ok(client) = async_nats::connect(stack.nats_url().split(',').collect::<Vec<_>>()).await else {
        return 0;
    };
    let js = jetstream::new(client);
    match js.get_stream("ORDERS").await {
        Ok(mut s) => s.info().await.map(|i| i.state.last_sequence).unwrap_or(0),
        Err(_) => 0,
    }
}

async fn leader_killed_mid_sale(sync_always: bool) {
    let mut stack = Stack::start_cluster(3, sync_always).await.unwrap();
    let api = AppProcess::api(&stack, SHARDS, &[]).await.unwrap();
    let _worker = AppProcess::worker(&stack, SHARDS, &[]).await.unwrap();
    let (leader, replicas) = orders_leader(&stack).await.expect("ORDERS has a leader");
    assert_eq!(replicas, 3, "streams are created with 3 replicas on a 3-node cluster");

    let ticket = create_ticket(api.url(), STOCK, 2).await.unwrap();
    let plan = Buyers::plan(8_000, 2_000, ticket, |i| 1 + (i % 2) as u32, 25);
    let bases = vec![api.url().to_owned()];
    let buyers = tokio::spawn(async move { Buyers::new(bases, 48).run(plan).await });

    // Mid-sale: once a few hundred orders are stored, SIGKILL the node leading ORDERS.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while orders_stored(&stack).await < 400 {
        assert!(tokio::time::Instant::now() < deadline, "the sale never got going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (leader_now, _) = orders_leader(&stack).await.expect("ORDERS has a leader");
    let stored_at_kill = orders_stored(&stack).await;
    stack.nats_node_mut(&leader_now).expect("the leader is one of ours").kill();
    eprintln!(
        "killed ORDERS leader {leader_now} (first leader {leader}) with {stored_at_kill} orders stored"
    );

    // A new leader among the two survivors.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let new_leader = loop {
        if let Some((l, _)) = orders_leader(&stack).await
            && l != leader_now
        {
            break l;
        }
        assert!(tokio::time::Instant::now() < deadline, "no new ORDERS leader after the kill");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let outcome = buyers.await.unwrap();
    assert_eq!(outcome.abandoned, 0, "clients gave up: {:?}", outcome.statuses);
    assert_eq!(outcome.inconsistent, 0, "a retried request got a different answer");
    let started = std::time::Instant::now();
    let ledger =
        settle_and_check(&stack.database_url, api.url(), &outcome, Duration::from_secs(180)).await.unwrap();
    assert_eq!(ledger.sold[&ticket], i64::from(STOCK), "demand exceeded stock, so all of it is sold");
    assert_eq!(ledger.orders, outcome.accepted.len(), "every 202 is one order row");
    let mut statuses: Vec<_> = outcome.statuses.iter().collect();
    statuses.sort();
    // The measured outcome, quoted in RELIABILITY.md (run with --no-capture).
    eprintln!(
        "outcome (sync_always={sync_always}): new leader {new_leader}; accepted={} replays={} statuses={statuses:?} \
         orders_in_db={} sold={}/{STOCK} settled_after_load={:.1}s",
        outcome.accepted.len(),
        outcome.replays,
        ledger.orders,
        ledger.sold[&ticket],
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_leader_killed_mid_sale_on_three_nodes_loses_no_202() {
    leader_killed_mid_sale(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_leader_killed_mid_sale_with_sync_always_loses_no_202() {
    leader_killed_mid_sale(true).await;
}
