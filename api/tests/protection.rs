//! Protection over real HTTP: rate limits per user and per IP (429 +
//! Retry-After), the in-flight bound and the request deadline (503 +
//! Retry-After, at once), and probes that answer through all of it.

mod common;

use std::time::{Duration, Instant};

use common::{TestApi, problem};
use reqwest::Response;
use tps_testkit::token;

async fn statuses(responses: Vec<Response>) -> Vec<u16> {
    responses.iter().map(|r| r.status().as_u16()).collect()
}

#[tokio::test]
async fn a_user_over_its_rate_gets_429_with_retry_after_and_others_do_not() {
    // 2 a second, bursts of 4.
    let api = TestApi::start_with(&["--rate-limit-per-user", "2", "--rate-limit-per-ip", "0"]).await;
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(api.get("/v1/orders").bearer_auth(token("greedy", false)).send().await.unwrap());
    }
    let limited = answers.pop().unwrap();
    assert_eq!(statuses(answers).await[..4], [200, 200, 200, 200], "the burst passes");
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body = problem(limited, 429).await;
    assert!(body["detail"].as_str().unwrap().contains("user"), "{body}");

    let other = api.get("/v1/orders").bearer_auth(token("modest", false)).send().await.unwrap();
    assert_eq!(other.status(), 200, "limits are per user");
    // A forged token cannot spend someone else's quota: it is refused before counting.
    let forged = api.get("/v1/orders").bearer_auth("e30.e30.c2ln").send().await.unwrap();
    problem(forged, 401).await;

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let later = api.get("/v1/orders").bearer_auth(token("greedy", false)).send().await.unwrap();
    assert_eq!(later.status(), 200, "the quota refills");
    api.stop().await;
}

#[tokio::test]
async fn a_client_ip_over_its_rate_gets_429_but_probes_still_answer() {
    let api = TestApi::start_with(&["--rate-limit-per-ip", "2"]).await;
    let mut codes = Vec::new();
    for _ in 0..8 {
        codes.push(api.get("/v1/tickets").send().await.unwrap().status().as_u16());
    }
    assert_eq!(codes[..4], [200, 200, 200, 200], "{codes:?}");
    assert!(codes[4..].contains(&429), "{codes:?}");
    let limited = api.get("/openapi.json").send().await.unwrap();
    assert!(limited.headers().contains_key("retry-after"));
    let body = problem(limited, 429).await;
    assert!(body["detail"].as_str().unwrap().contains("ip"), "{body}");
    // Unknown routes and wrong methods are anonymous too: no free flood past the limit.
    problem(api.get("/no-such-route").send().await.unwrap(), 429).await;
    problem(api.delete("/v1/tickets").send().await.unwrap(), 429).await;
    for probe in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(api.get(probe).send().await.unwrap().status(), 200, "{probe} is never limited");
    }
    // Signed-in routes are limited per user, not per IP: the same host still reads its orders.
    let reader = tps_testkit::token("ip-limited", false);
    for _ in 0..4 {
        let read = api.get("/v1/orders").bearer_auth(&reader).send().await.unwrap();
        assert_eq!(read.status(), 200, "a signed-in route is not limited per client IP");
    }
    api.stop().await;
}

#[tokio::test]
async fn beyond_the_in_flight_bound_requests_are_shed_at_once_and_slow_ones_meet_a_deadline() {
    let mut api = TestApi::start_with(&[
        "--max-in-flight",
        "1",
        "--queue-timeout-ms",
        "0",
        "--request-timeout-ms",
        "1500",
        "--db-probe-ms",
        "0",
    ])
    .await;
    let ticket = api.ticket(10, 1).await;
    // Postgres gone: a settled-order read waits for a connection, holding the one slot.
    api.stack.postgres.kill();
    let slow = {
        let request = api.get("/v1/orders").bearer_auth(token("patient", false));
        tokio::spawn(async move {
            let started = Instant::now();
            (request.send().await.unwrap(), started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let shed = api.get(&format!("/v1/tickets/{ticket}")).send().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(500), "shed at once, not queued");
    assert_eq!(shed.headers()["retry-after"], "1");
    let body = problem(shed, 503).await;
    assert!(body["detail"].as_str().unwrap().contains("in flight"), "{body}");
    assert_eq!(api.get("/healthz").send().await.unwrap().status(), 200, "probes bypass the bound");

    let (slow, took) = slow.await.unwrap();
    assert!(slow.headers().contains_key("retry-after"));
    problem(slow, 503).await;
    assert!(
        took < Duration::from_millis(2_900),
        "answered by the deadline or the pool bound, not hung: {took:?}"
    );
}

#[tokio::test]
async fn beyond_the_in_flight_bound_a_request_waits_its_turn_within_the_queue_timeout() {
    let mut api = TestApi::start_with(&[
        "--max-in-flight",
        "1",
        "--queue-timeout-ms",
        "4000",
        "--request-timeout-ms",
        "1500",
        "--db-probe-ms",
        "0",
    ])
    .await;
    let ticket = api.ticket(10, 1).await;
    api.stack.postgres.kill();
    // The one slot is held by a read that waits for Postgres until the 1.5 s deadline.
    let slow = {
        let request = api.get("/v1/orders").bearer_auth(token("patient", false));
        tokio::spawn(async move { request.send().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let queued = api.get(&format!("/v1/tickets/{ticket}")).send().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(queued.status(), 200, "served once the slot was free, not shed");
    assert!(waited > Duration::from_millis(700), "it waited for the slot: {waited:?}");
    problem(slow.await.unwrap(), 503).await;
    let metrics = api.get("/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tps_api_queued_total 1"), "{metrics}");
}

#[tokio::test]
async fn while_postgres_is_down_reads_fail_at_once_orders_flow_and_it_recovers_by_itself() {
    let mut api = TestApi::start_with(&["--db-probe-ms", "200"]).await;
    let ticket = api.ticket(100, 2).await;
    let reader = tps_testkit::token("steady", false);
    let read_orders = |api: &TestApi| api.get("/v1/orders").bearer_auth(&reader).send();
    api.stack.postgres.stop();
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let started = Instant::now();
    let read = read_orders(&api).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(300), "failed fast: {:?}", started.elapsed());
    assert_eq!(read.headers()["retry-after"], "1");
    problem(read, 503).await;
    let order = api.order("steady", "k1", serde_json::json!({"ticketId": ticket, "quantity": 1})).await;
    assert_eq!(order.status(), 202, "the hot path needs no Postgres");
    let catalog = api.get(&format!("/v1/tickets/{ticket}")).send().await.unwrap();
    assert_eq!(catalog.status(), 200, "the catalog is served from the cache");
    let signup = api.get(&format!("/v1/users/{}", uuid::Uuid::new_v4())).send().await.unwrap();
    problem(signup, 503).await;

    api.stack.postgres.start_again().await.unwrap();
    let mut recovered = false;
    for _ in 0..50 {
        if read_orders(&api).await.unwrap().status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "reads come back without a restart");
}
