//! Two contenders for one shard: only one holds the lease, tokens only grow, and
//! a stale token's transaction is refused by the fence.

mod common;

use std::time::Duration;

use common::Harness;
use std::sync::Arc;
use tps_worker::ownership::fence::{self, Claim};
use tps_worker::ownership::lease::LeaseTable;
use tps_worker::redis_link::RedisLink;

const STREAM: &str = "ORDERS";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_growing_tokens_and_the_fence_refuses_the_stale() {
    let h = Harness::start(1).await;
    let redis = Arc::new(RedisLink::new(&h.stack.redis.url(), None).unwrap());
    let ttl = Duration::from_millis(400);
    let a = LeaseTable::new(redis.clone(), STREAM, "a", ttl);
    let b = LeaseTable::new(redis.clone(), STREAM, "b", ttl);

    let la = a.acquire(0).await.unwrap().expect("a takes the free shard");
    assert_eq!(b.acquire(0).await.unwrap(), None, "b cannot take a held shard");
    assert!(a.renew(&la).await.unwrap());
    assert!(!b.renew(&la).await.unwrap(), "only the holder renews");
    assert!(!b.release(&la).await.unwrap(), "only the holder releases");
    assert_eq!(fence::claim(&h.pool, STREAM, 0, la.token, "a").await.unwrap(), Claim::Claimed);

    // a pauses past its ttl; b takes over with a larger token.
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let lb = b.acquire(0).await.unwrap().expect("the expired lease is free");
    assert!(lb.token > la.token, "tokens only grow");
    assert!(!a.renew(&la).await.unwrap(), "a has lost its lease");

    // a's transaction began before b's claim: b's claim waits for it...
    let mut tx_a = h.pool.begin().await.unwrap();
    assert!(fence::still_ours(&mut tx_a, STREAM, 0, la.token).await.unwrap());
    let pool = h.pool.clone();
    let token = lb.token;
    let claim_b = tokio::spawn(async move { fence::claim(&pool, STREAM, 0, token, "b").await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!claim_b.is_finished(), "the claim waits for the old owner's transaction");
    tx_a.commit().await.unwrap();
    assert_eq!(claim_b.await.unwrap(), Claim::Claimed);
    // ...and every later transaction of a is refused.
    let mut tx_a = h.pool.begin().await.unwrap();
    assert!(!fence::still_ours(&mut tx_a, STREAM, 0, la.token).await.unwrap(), "a stale token never commits");
    tx_a.rollback().await.unwrap();
    assert_eq!(
        fence::claim(&h.pool, STREAM, 0, la.token, "a").await.unwrap(),
        Claim::Stale { fence: lb.token }
    );

    // Redis loses everything: its counter restarts below the fence, which refuses
    // the small token; raising the counter past the fence recovers.
    redis.query::<String>(&redis::cmd("FLUSHALL")).await.unwrap();
    let small = a.acquire(0).await.unwrap().unwrap();
    assert!(small.token <= lb.token);
    assert_eq!(
        fence::claim(&h.pool, STREAM, 0, small.token, "a").await.unwrap(),
        Claim::Stale { fence: lb.token }
    );
    a.raise_counter(0, lb.token).await.unwrap();
    assert!(a.release(&small).await.unwrap());
    let fresh = a.acquire(0).await.unwrap().unwrap();
    assert!(fresh.token > lb.token);
    assert_eq!(fence::claim(&h.pool, STREAM, 0, fresh.token, "a").await.unwrap(), Claim::Claimed);
    assert_eq!(a.free_shards(1).await.unwrap(), vec![false]);
    assert!(a.release(&fresh).await.unwrap());
    assert_eq!(a.free_shards(1).await.unwrap(), vec![true]);
}
