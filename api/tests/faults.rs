//! Dependencies going away: NATS down gives 503 and loses no 202; Redis down
//! degrades; `/readyz` tells which one is missing.

mod common;

use std::time::{Duration, Instant};

use common::{TestApi, problem, stored_order_ids};
use serde_json::{Value, json};
use tps_api::telemetry::metrics;
use tps_testkit::token;

async fn readiness(api: &TestApi) -> (u16, Value) {
    let resp = api.get("/readyz").send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn nats_down_gives_503_with_retry_after_and_no_202_is_ever_lost() {
    let mut api = TestApi::start().await;
    let ticket = api.ticket(1_000, 5).await;
    let body = json!({"ticketId": ticket, "quantity": 1});
    let mut accepted = Vec::new();
    for i in 0..5 {
        let resp = api.order("frank", &format!("before-{i}"), body.clone()).await;
        assert_eq!(resp.status(), 202);
        accepted.push(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(readiness(&api).await.0, 200);

    api.stack.nats.kill();
    let down = api.order("frank", "during", body.clone()).await;
    assert_eq!(down.headers()["retry-after"], "1");
    problem(down, 503).await;
    let (status, checks) = readiness(&api).await;
    assert_eq!((status, checks["nats"].as_bool()), (503, Some(false)), "{checks}");

    api.stack.nats.start_again().await.unwrap();
    // The client retries the refused order with the same key until it is stored.
    let mut retried = None;
    for _ in 0..100 {
        let resp = api.order("frank", "during", body.clone()).await;
        if resp.status() == 202 {
            retried = Some(resp.json::<Value>().await.unwrap());
            break;
        }
        assert_eq!(resp.status(), 503);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let retried = retried.expect("orders are accepted again after NATS is back");
    assert_eq!(retried["id"], tps_contract::OrderCommand::id_for("frank", "during").to_string());
    accepted.push(retried["id"].as_str().unwrap().to_owned());
    for i in 0..5 {
        let resp = api.order("frank", &format!("after-{i}"), body.clone()).await;
        assert_eq!(resp.status(), 202);
        accepted.push(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }

    let stored: Vec<String> =
        stored_order_ids(&api.stack.nats.url()).await.iter().map(|id| id.to_string()).collect();
    for id in &accepted {
        assert_eq!(
            stored.iter().filter(|s| *s == id).count(),
            1,
            "202'd order {id} is in the stream exactly once"
        );
    }
    assert_eq!(readiness(&api).await.0, 200);
}

#[tokio::test]
async fn redis_down_degrades_to_jetstream_dedup_and_readyz_says_so() {
    let mut api = TestApi::start().await;
    let ticket = api.ticket(1_000, 5).await;
    let body = json!({"ticketId": ticket, "quantity": 1});
    let before = api.order("gina", "k1", body.clone()).await;
    assert_eq!(before.status(), 202);

    api.stack.redis.kill();
    let (status, checks) = readiness(&api).await;
    assert_eq!((status, checks["redis"].as_bool(), checks["nats"].as_bool()), (503, Some(false), Some(true)));

    // New orders are still accepted, with the same derived id as ever.
    let resp = api.order("gina", "k2", body.clone()).await;
    assert_eq!(resp.status(), 202);
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(id, tps_contract::OrderCommand::id_for("gina", "k2").to_string());
    // A replay is recognised by JetStream's de-duplication.
    let replay = api.order("gina", "k2", body.clone()).await;
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let stored: Vec<String> =
        stored_order_ids(&api.stack.nats.url()).await.iter().map(|id| id.to_string()).collect();
    assert_eq!(stored.iter().filter(|s| **s == id).count(), 1);
    // Its PENDING state is unknowable without Redis: a clean 503, not a wrong 404.
    let read = api.get(&format!("/v1/orders/{id}")).bearer_auth(token("gina", false)).send().await.unwrap();
    problem(read, 503).await;

    api.stack.redis.start_again().await.unwrap();
    let mut ready = false;
    for _ in 0..50 {
        if readiness(&api).await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "readyz recovers by itself");
    let mut claimed = false;
    for _ in 0..50 {
        let resp = api.order("gina", "k3", body.clone()).await;
        assert_eq!(resp.status(), 202);
        let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        let read =
            api.get(&format!("/v1/orders/{id}")).bearer_auth(token("gina", false)).send().await.unwrap();
        if read.status() == 200 {
            claimed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(claimed, "claims and PENDING records resume once Redis is back");
}

/// A Redis that answers nothing (SIGSTOP: hung, or cut off) is told from a busy pod's late
/// replies (`redis_link.rs`): with nothing answered, an order waits one bound (then the
/// breaker skips Redis), never the longer wait a live Redis gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_costs_an_order_one_bound_not_the_wait_a_busy_one_gets() {
    // A short bound, not the tests' generous one (a flag in `extra` replaces the base's): 500 ms,
    // so that one bound and the longer wait of a live Redis (8 bounds, 4 s) are far apart even
    // on a loaded host.
    let api = TestApi::start_with(&["--redis-timeout-ms", "500"]).await;
    let ticket = api.ticket(1_000, 5).await;
    let body = json!({"ticketId": ticket, "quantity": 1});
    assert_eq!(api.order("ivy", "k0", body.clone()).await.status(), 202);

    api.stack.redis.pause();
    let (degraded, waited) = (metrics().redis_degraded.get(), metrics().redis_slow_waits.get());
    for i in 1..=10 {
        let started = Instant::now();
        let resp = api.order("ivy", &format!("k{i}"), body.clone()).await;
        let took = started.elapsed();
        assert_eq!(resp.status(), 202, "order {i}");
        // One bound is 500 ms; the longest wait of a live Redis would be 8 of them (4 s).
        assert!(took < Duration::from_millis(2_500), "order {i} took {took:?}");
    }
    assert!(metrics().redis_degraded.get() >= degraded + 10, "every order ran without its claim");
    assert_eq!(metrics().redis_slow_waits.get(), waited, "nothing answered, so no call waited longer");

    // Back: a key accepted meanwhile is still one order, answered as a replay.
    api.stack.redis.resume();
    let replay = api.order("ivy", "k3", body.clone()).await;
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let id = tps_contract::OrderCommand::id_for("ivy", "k3").to_string();
    let stored: Vec<String> =
        stored_order_ids(&api.stack.nats.url()).await.iter().map(|id| id.to_string()).collect();
    assert_eq!(stored.iter().filter(|s| **s == id).count(), 1);
}

#[tokio::test]
async fn postgres_down_fails_readyz_but_orders_keep_flowing_from_the_cache() {
    let mut api = TestApi::start().await;
    let ticket = api.ticket(1_000, 5).await;
    api.stack.postgres.stop();
    let (status, checks) = readiness(&api).await;
    assert_eq!((status, checks["postgres"].as_bool()), (503, Some(false)), "{checks}");
    let resp = api.order("hank", "k1", json!({"ticketId": ticket, "quantity": 1})).await;
    assert_eq!(resp.status(), 202, "the hot path needs no Postgres");
    // The catalog is served from the cache, so it outlives Postgres with its last known stock;
    // only what the cache cannot answer needs the database.
    let resp = api.get(&format!("/v1/tickets/{ticket}")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "catalog reads come from the cache");
    assert_eq!(api.get("/v1/tickets").send().await.unwrap().status(), 200);
    let resp = api.get(&format!("/v1/tickets/{}", uuid::Uuid::new_v4())).send().await.unwrap();
    problem(resp, 503).await;
}
