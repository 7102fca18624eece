//! The Redis link's bound tells a silent Redis from a busy pod, against a real Redis.
//!
//! A reply that comes late is made here by delaying the call's own future: the same thing
//! a saturated runtime does when it reads the replies late.

use std::time::{Duration, Instant};

use tps_api::redis_link::{RedisLink, RedisUnavailable, SLOW_CAP};
use tps_api::telemetry::metrics;
use tps_testkit::Redis;

/// Generous, so that a loaded host's own stalls never pass for silence between the quick calls.
const BOUND: Duration = Duration::from_millis(500);

async fn link(redis: &Redis) -> RedisLink {
    let (link, _task) = RedisLink::start(&redis.url(), None, BOUND).unwrap();
    assert!(link.wait_connected(Duration::from_secs(10)).await, "connected to redis");
    link
}

/// A PING whose reply is read `late` after it was sent.
async fn late_ping(link: &RedisLink, late: Duration) -> Result<String, RedisUnavailable> {
    link.run(|mut c| async move {
        let reply = redis::cmd("PING").query_async::<String>(&mut c).await;
        tokio::time::sleep(late).await;
        reply
    })
    .await
}

/// Runs `slow` while quick PINGs on the same link are answered every 10 ms.
async fn beside_quick_calls<T>(link: &RedisLink, slow: impl Future<Output = T>) -> T {
    let quick = async {
        loop {
            let _ = late_ping(link, Duration::ZERO).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        out = slow => out,
        () = quick => unreachable!("the quick calls never end"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reply_while_redis_answers_other_calls_is_waited_for() {
    let redis = Redis::start().await.unwrap();
    let link = link(&redis).await;
    let waits = metrics().redis_slow_waits.get();
    let started = Instant::now();
    let reply = beside_quick_calls(&link, late_ping(&link, 3 * BOUND)).await;
    assert_eq!(reply.unwrap(), "PONG", "a live Redis's late reply is not a failure");
    assert!(started.elapsed() >= 3 * BOUND);
    assert!(!link.breaker_open(), "a busy pod is not a dead Redis");
    assert!(metrics().redis_slow_waits.get() > waits, "the extra waits are counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_hears_nothing_fails_at_the_bound_and_opens_the_breaker() {
    let redis = Redis::start().await.unwrap();
    let link = link(&redis).await;
    let started = Instant::now();
    let reply = late_ping(&link, 10 * BOUND).await;
    assert!(matches!(reply, Err(RedisUnavailable::Timeout)), "{reply:?}");
    let took = started.elapsed();
    assert!(took >= BOUND && took < 5 * BOUND, "failed after {took:?}, not at the bound");
    assert!(link.breaker_open());
    assert!(matches!(late_ping(&link, Duration::ZERO).await, Err(RedisUnavailable::Skipped)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reply_is_waited_for_at_most_the_cap() {
    let redis = Redis::start().await.unwrap();
    let link = link(&redis).await;
    let started = Instant::now();
    let reply = beside_quick_calls(&link, late_ping(&link, 2 * SLOW_CAP * BOUND)).await;
    assert!(matches!(reply, Err(RedisUnavailable::Timeout)), "{reply:?}");
    let took = started.elapsed();
    assert!(
        took >= SLOW_CAP * BOUND && took < 2 * SLOW_CAP * BOUND,
        "gave up after {took:?}, not after {SLOW_CAP} bounds"
    );
}
