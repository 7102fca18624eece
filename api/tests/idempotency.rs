//! A key's answer outlives Redis: over real HTTP, against a real api, worker,
//! NATS, Postgres and Redis. Redis is flushed (as after a restart without
//! persistence) or its claims expire; the same key and body still get their
//! 202 with `Idempotent-Replayed: true`, another body 422 (409 for a sign-up id),
//! and a key that has an order never gets 409 SOLD_OUT.

mod common;

use std::time::Duration;

use common::{SHARDS, TestApi};
use reqwest::Response;
use serde_json::{Value, json};
use sqlx::PgPool;
use tps_testkit::AppProcess;
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(60);

async fn redis(api: &TestApi) -> redis::aio::MultiplexedConnection {
    redis::Client::open(api.stack.redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
}

async fn flushall(api: &TestApi) {
    let mut conn = redis(api).await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
}

/// The value of a metric (summed over its label sets) on the api's `/metrics`.
async fn metric(api: &TestApi, name: &str) -> f64 {
    let text = api.http.get(&api.metrics_url).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn sold_out(api: &TestApi, ticket: Uuid) -> bool {
    let body: Value = api.get(&format!("/v1/tickets/{ticket}")).send().await.unwrap().json().await.unwrap();
    body["soldOut"] == true
}

/// Asserts the 202 of an order, as first given, marked as a replay or not.
async fn assert_accepted(resp: Response, user: &str, key: &str, ticket: Uuid, quantity: u32, replayed: bool) {
    let status = resp.status();
    let header = resp.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap().to_owned());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 202, "{user}/{key}: {body}");
    let id = tps_contract::OrderCommand::id_for(user, key);
    assert_eq!(
        body,
        json!({"id": id, "status": "PENDING", "ticketId": ticket, "quantity": quantity}),
        "{user}/{key}"
    );
    assert_eq!(header.as_deref(), replayed.then_some("true"), "{user}/{key}: Idempotent-Replayed");
}

/// Every key gets its answer again: the same body its 202 as a replay, another body 422.
/// `other_first`: the other body comes first (then the claim Redis lacks is written with
/// the other body, and must be corrected), else the same body first.
async fn assert_keys_answered(
    api: &TestApi,
    ticket: Uuid,
    keys: &[(String, String, u32)],
    other_first: bool,
) {
    for (user, key, quantity) in keys {
        let same = json!({"ticketId": ticket, "quantity": quantity});
        let other = json!({"ticketId": ticket, "quantity": 3 - quantity});
        if other_first {
            common::problem(api.order(user, key, other.clone()).await, 422).await;
        }
        assert_accepted(api.order(user, key, same.clone()).await, user, key, ticket, *quantity, true).await;
        common::problem(api.order(user, key, other).await, 422).await;
        assert_accepted(api.order(user, key, same).await, user, key, ticket, *quantity, true).await;
    }
}

/// Places `n` orders of 1 or 2 units; returns (user, key, quantity) of each 202.
async fn place(api: &TestApi, ticket: Uuid, prefix: &str, n: usize) -> Vec<(String, String, u32)> {
    let mut keys = Vec::new();
    for i in 0..n {
        let (user, key, quantity) =
            (format!("{prefix}-user-{i}"), format!("{prefix}-k-{i}"), 1 + (i % 2) as u32);
        let resp = api.order(&user, &key, json!({"ticketId": ticket, "quantity": quantity})).await;
        assert_accepted(resp, &user, &key, ticket, quantity, false).await;
        keys.push((user, key, quantity));
    }
    keys
}

/// Orders for `ticket` until it is sold out and the api's cache knows it. On a timeout the
/// panic says what the drain saw: the answers, the ticket as the api and Postgres show it.
async fn sell_out(api: &TestApi, ticket: Uuid) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut answers: std::collections::BTreeMap<u16, usize> = Default::default();
    let mut last = String::new();
    for i in 0.. {
        if sold_out(api, ticket).await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let pool = PgPool::connect(&api.stack.database_url).await.unwrap();
            let stored: (i32, i64) = sqlx::query_as(
                "SELECT available, (SELECT count(*) FROM orders WHERE ticket_id = $1) FROM tickets WHERE id = $1",
            )
            .bind(ticket)
            .fetch_one(&pool)
            .await
            .unwrap();
            let shown = api.get(&format!("/v1/tickets/{ticket}")).send().await.unwrap().text().await.unwrap();
            panic!(
                "timed out waiting for the ticket to sell out: drain answers {answers:?}, last {last}; \
                 the api shows {shown}; Postgres: (available, orders) {stored:?}; claims in doubt {}",
                metric(api, "tps_api_claims_in_doubt").await
            );
        }
        let resp =
            api.order("drainer", &format!("drain-{i}"), json!({"ticketId": ticket, "quantity": 1})).await;
        let status = resp.status().as_u16();
        *answers.entry(status).or_default() += 1;
        last = resp.text().await.unwrap_or_default();
        // 503 while claims are in doubt on a sold-out ticket: not an answer, a retry.
        assert!(matches!(status, 202 | 409 | 503), "{status}: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_after_a_redis_flush_mid_sale_get_their_answer_and_never_sold_out() {
    let api = TestApi::start().await;
    let _worker = AppProcess::worker(&api.stack, SHARDS, &[]).await.unwrap();
    let pool = PgPool::connect(&api.stack.database_url).await.unwrap();
    let ticket = api.ticket(30, 2).await;
    let settled = place(&api, ticket, "before", 10).await;
    wait_for("10 orders settled", async || count(&pool, "SELECT count(*) FROM orders").await == 10).await;

    // Redis loses its data: every claim is gone. The api notices (the epoch marker).
    let lost = metric(&api, "tps_api_redis_data_lost_total").await;
    flushall(&api).await;
    wait_for("the loss to be detected", async || metric(&api, "tps_api_redis_data_lost_total").await > lost)
        .await;
    // Keys placed after the flush, then the sale sells out.
    let after = place(&api, ticket, "after", 4).await;
    sell_out(&api, ticket).await;

    // Settled before the flush: answered from Postgres, never 409.
    assert_keys_answered(&api, ticket, &settled, true).await;
    assert_keys_answered(&api, ticket, &after, false).await;

    // Once every order from before the flush is settled, claims are trusted again and a
    // brand-new key on the sold-out ticket gets the cheap 409 with no order.
    wait_for("claims trusted again", async || metric(&api, "tps_api_claims_in_doubt").await == 0.0).await;
    let fresh = api.order("late", "late-1", json!({"ticketId": ticket, "quantity": 1})).await;
    assert_eq!(fresh.status(), 409);
    let body: Value = fresh.json().await.unwrap();
    assert_eq!(body["reason"], "SOLD_OUT");
    // Flushed again, the settled keys still get their answers (Postgres, not the claims).
    flushall(&api).await;
    assert_keys_answered(&api, ticket, &settled, false).await;
    flushall(&api).await;
    assert_keys_answered(&api, ticket, &after, true).await;
    assert!(metric(&api, "tps_api_idempotency_recalls_total").await > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_written_again_after_a_flush_keeps_the_first_accepted_time() {
    let api = TestApi::start().await;
    let _worker = AppProcess::worker(&api.stack, SHARDS, &[]).await.unwrap();
    let pool = PgPool::connect(&api.stack.database_url).await.unwrap();
    let ticket = api.ticket(100, 2).await;
    let keys = place(&api, ticket, "again", 2).await;
    wait_for("2 orders settled", async || count(&pool, "SELECT count(*) FROM orders").await == 2).await;
    flushall(&api).await;
    let mut conn = redis(&api).await;
    for (user, key, quantity) in &keys {
        // The same body again on a ticket that is not sold out: a new claim is written (with
        // now), Postgres says the key was used, and the claim is corrected to the first time,
        // so that a replay re-publishes the first command exactly.
        let resp = api.order(user, key, json!({"ticketId": ticket, "quantity": quantity})).await;
        assert_accepted(resp, user, key, ticket, *quantity, true).await;
        let id = tps_contract::OrderCommand::id_for(user, key);
        let first: chrono::DateTime<chrono::Utc> =
            sqlx::query_scalar("SELECT created_at FROM orders WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        let claimed: i64 = redis::cmd("HGET")
            .arg(format!("tps:order:{id}"))
            .arg("created")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            claimed,
            first.timestamp_millis(),
            "{user}/{key}: the claim keeps the first accepted time"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsettled_orders_after_a_redis_flush_are_told_apart_by_their_stored_command() {
    // No worker: the orders stay in the stream, unsettled, when Redis loses its claims.
    let api = TestApi::start().await;
    let ticket = api.ticket(100, 2).await;
    let keys = place(&api, ticket, "pending", 6).await;
    flushall(&api).await;
    // JetStream's duplicate detection knows the ids; the stored command gives the body.
    assert_keys_answered(&api, ticket, &keys, true).await;
    flushall(&api).await;
    assert_keys_answered(&api, ticket, &keys, false).await;
    let stored = common::stored_order_ids(&api.stack.nats.url()).await;
    assert_eq!(stored.len(), 6, "no second message for a replayed key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_whose_claims_expired_get_their_answer_and_never_sold_out() {
    let api = TestApi::start_with(&["--pending-ttl-secs", "2"]).await;
    let _worker = AppProcess::worker(&api.stack, SHARDS, &[]).await.unwrap();
    let pool = PgPool::connect(&api.stack.database_url).await.unwrap();
    let ticket = api.ticket(30, 2).await;
    let keys = place(&api, ticket, "ttl", 8).await;
    wait_for("8 orders settled", async || count(&pool, "SELECT count(*) FROM orders").await == 8).await;
    let mut conn = redis(&api).await;
    wait_for("the claims to expire", async || {
        let mut left = 0;
        for (user, key, _) in &keys {
            let id = tps_contract::OrderCommand::id_for(user, key);
            let exists: i64 =
                redis::cmd("EXISTS").arg(format!("tps:order:{id}")).query_async(&mut conn).await.unwrap();
            left += exists;
        }
        left == 0
    })
    .await;
    sell_out(&api, ticket).await;
    assert_eq!(metric(&api, "tps_api_claims_in_doubt").await, 0.0, "nothing was lost, only expired");
    for (user, key, quantity) in &keys {
        let same = api.order(user, key, json!({"ticketId": ticket, "quantity": quantity})).await;
        assert_accepted(same, user, key, ticket, *quantity, true).await;
        let other = api.order(user, key, json!({"ticketId": ticket, "quantity": 3 - quantity})).await;
        common::problem(other, 422).await;
    }
    // The claims were written back, and expire again: Postgres still answers after that.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (user, key, quantity) = &keys[0];
    let same = api.order(user, key, json!({"ticketId": ticket, "quantity": quantity})).await;
    assert_accepted(same, user, key, ticket, *quantity, true).await;
}

fn signup(id: Uuid, name: &str) -> Value {
    json!({
        "id": id, "name": name, "email": format!("{}@example.com", id.simple()), "age": 30, "score": 1.5,
        "active": true, "country": "NL", "team": {"name": "core", "leader": false, "projects": []},
        "logs": [{"date": "2025-01-01", "action": "login"}]
    })
}

async fn post_signup(api: &TestApi, body: &Value) -> Response {
    api.post("/v1/users").json(body).send().await.unwrap()
}

async fn assert_signup_accepted(resp: Response, id: Uuid, replayed: bool) {
    let status = resp.status();
    let header = resp.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap().to_owned());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 202, "{id}: {body}");
    assert_eq!(body, json!({"id": id, "status": "PENDING"}));
    assert_eq!(header.as_deref(), replayed.then_some("true"), "{id}: Idempotent-Replayed");
}

/// Each id: the same body is a replay, another body 409 (in the order `other_first` says).
async fn assert_ids_answered(api: &TestApi, ids: &[Uuid], other_first: bool) {
    for id in ids {
        if other_first {
            common::problem(post_signup(api, &signup(*id, "another")).await, 409).await;
        }
        assert_signup_accepted(post_signup(api, &signup(*id, "first")).await, *id, true).await;
        common::problem(post_signup(api, &signup(*id, "another")).await, 409).await;
        assert_signup_accepted(post_signup(api, &signup(*id, "first")).await, *id, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signups_after_a_redis_flush_or_an_expired_claim_keep_their_answer() {
    let api = TestApi::start_with(&["--pending-ttl-secs", "3"]).await;
    let pool = PgPool::connect(&api.stack.database_url).await.unwrap();
    // Unsettled (no worker yet): the stored command tells the body.
    let pending: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    for id in &pending {
        assert_signup_accepted(post_signup(&api, &signup(*id, "first")).await, *id, false).await;
    }
    flushall(&api).await;
    assert_ids_answered(&api, &pending, true).await;
    flushall(&api).await;
    assert_ids_answered(&api, &pending, false).await;

    // Settled: Postgres (the stored fingerprint) tells the body.
    let _worker = AppProcess::worker(&api.stack, SHARDS, &[]).await.unwrap();
    wait_for("4 sign-ups settled", async || count(&pool, "SELECT count(*) FROM users").await == 4).await;
    flushall(&api).await;
    assert_ids_answered(&api, &pending, true).await;
    flushall(&api).await;
    assert_ids_answered(&api, &pending, false).await;
    // The claims written back expire; Postgres still answers.
    let mut conn = redis(&api).await;
    wait_for("the claims to expire", async || {
        let keys: Vec<String> = redis::cmd("KEYS").arg("tps:signup:*").query_async(&mut conn).await.unwrap();
        keys.is_empty()
    })
    .await;
    assert_ids_answered(&api, &pending, true).await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM users WHERE name <> 'first'").await,
        0,
        "the first body stands"
    );
}

/// The same key sent several times at once: the claim picks one request as the first, and
/// that one answers without `Idempotent-Replayed` (and counts the order as new) even when a
/// replay, which skips the Postgres lookup, stored the same command before it (its PubAck then
/// says duplicate, and the stored command carries the first request's own `acceptedAt`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_key_give_exactly_one_first_answer() {
    // Every sign-up comes from one address: no per-IP limit.
    let api = TestApi::start_with(&["--rate-limit-per-ip", "0"]).await;
    let ticket = api.ticket(1_000_000, 2).await;
    exactly_one_first_answer_per_key(&api, ticket).await;
}

/// Without Redis no claim is made: JetStream alone says which copy came first (its PubAck is
/// the one not marked duplicate). Copies sent in the same millisecond publish identical
/// commands (the same `acceptedAt`), and a later one must not take the stored command for its
/// own: it answers as a replay. Fails when a claimless request may own a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_redis_concurrent_copies_of_a_key_give_exactly_one_first_answer() {
    let mut api = TestApi::start_with(&["--rate-limit-per-ip", "0"]).await;
    let ticket = api.ticket(1_000_000, 2).await;
    api.stack.redis.kill();
    exactly_one_first_answer_per_key(&api, ticket).await;
    assert!(metric(&api, "tps_api_redis_degraded_total").await > 0.0, "the claims were skipped");
}

async fn exactly_one_first_answer_per_key(api: &TestApi, ticket: Uuid) {
    const KEYS: usize = 60;
    const COPIES: usize = 4;
    let requests = (0..KEYS).flat_map(|i| (0..COPIES).map(move |_| i)).map(|i| async move {
        let (user, key) = (format!("race-user-{i}"), format!("race-k-{i}"));
        let resp = api.order(&user, &key, json!({"ticketId": ticket, "quantity": 1})).await;
        assert_eq!(resp.status(), 202, "{user}/{key}");
        (i, resp.headers().get("idempotent-replayed").is_some())
    });
    let answers = futures::future::join_all(requests).await;
    for i in 0..KEYS {
        let firsts = answers.iter().filter(|(k, replayed)| *k == i && !replayed).count();
        assert_eq!(firsts, 1, "key {i}: {firsts} answers without Idempotent-Replayed");
    }
    assert_eq!(metric(api, "tps_api_orders_accepted_total").await, KEYS as f64);
    assert_eq!(metric(api, "tps_api_idempotent_replays_total").await, (KEYS * (COPIES - 1)) as f64);

    // Sign-ups: the same, by id.
    let ids: Vec<Uuid> = (0..KEYS).map(|_| Uuid::new_v4()).collect();
    let signups = ids.iter().flat_map(|id| (0..COPIES).map(move |_| *id)).map(|id| async move {
        let resp = post_signup(api, &signup(id, "first")).await;
        assert_eq!(resp.status(), 202, "{id}");
        (id, resp.headers().get("idempotent-replayed").is_some())
    });
    let answers = futures::future::join_all(signups).await;
    for id in &ids {
        let firsts = answers.iter().filter(|(k, replayed)| k == id && !replayed).count();
        assert_eq!(firsts, 1, "sign-up {id}: {firsts} answers without Idempotent-Replayed");
    }
    assert_eq!(metric(api, "tps_api_signups_accepted_total").await, KEYS as f64);
}

/// A claim whose first request finds its command already stored, by a claimless copy (sent
/// while Redis was unreachable) with the very same `acceptedAt`: the identical command is not
/// this request's own, because it lacks the claim's mark (`Tps-Claimed`), so the answer is the
/// replay; the claimless copy was the first. Set up with a claim written back from the stored
/// command and then marked failed, the state in which the script answers `New` with that time.
/// Fails when the first request of a claim takes any identical stored command for its own.
#[tokio::test]
async fn a_claim_does_not_own_an_identical_command_stored_by_a_claimless_copy() {
    let mut api = TestApi::start().await;
    let ticket = api.ticket(1_000, 5).await;
    let body = json!({"ticketId": ticket, "quantity": 1});
    api.stack.redis.kill();
    let first = api.order("hana", "k1", body.clone()).await;
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none(), "the claimless copy came first");

    api.stack.redis.start_again().await.unwrap();
    wait_for("readyz to recover", async || {
        api.http.get(format!("{}/readyz", api.url)).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    // A replay once the api's Redis link is back writes the claim back from the stored command.
    let claim = format!("tps:order:{}", tps_contract::OrderCommand::id_for("hana", "k1"));
    let mut conn = redis(&api).await;
    wait_for("the claim written back", async || {
        let again = api.order("hana", "k1", body.clone()).await;
        assert_eq!(again.status(), 202);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        redis::cmd("HEXISTS").arg(&claim).arg("fp").query_async::<bool>(&mut conn).await.unwrap()
    })
    .await;
    let written: i64 =
        redis::cmd("HSET").arg(&claim).arg("failed").arg(1).query_async(&mut conn).await.unwrap();
    assert_eq!(written, 1, "marked failed");

    let third = api.order("hana", "k1", body).await;
    assert_eq!(third.status(), 202);
    assert_eq!(third.headers()["idempotent-replayed"], "true", "the claimless copy was the first");
    assert_eq!(metric(&api, "tps_api_orders_accepted_total").await, 1.0);
}
