//! TLS to the stores: an api on a Postgres that takes TLS connections only
//! (`sslmode=verify-full` against the test CA) and a Redis on a TLS port only
//! (`rediss://` with `REDIS_CA_CERT`) is ready, writes and reads tickets, and
//! takes orders through its Redis claims; plain connections and wrong CAs are refused.

mod common;

use common::TestApi;
use serde_json::json;
use tps_testkit::Stack;

#[tokio::test]
async fn an_api_on_tls_postgres_and_tls_redis_serves_and_plaintext_is_refused() {
    let stack = Stack::start_tls().await.expect("a TLS stack starts");
    assert!(stack.database_url.contains("sslmode=verify-full"), "{}", stack.database_url);
    assert!(stack.redis.url().starts_with("rediss://"));

    // Postgres: plain TCP is rejected by the server, so whatever works below went over TLS.
    let db = stack.database_url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    let plain = sqlx::PgPool::connect(&stack.postgres.plaintext_url_for(&db)).await;
    assert!(plain.is_err(), "a plaintext connection is refused");
    // A CA that did not sign the server's certificate is refused by the client.
    let other_ca = tps_testkit::TlsFiles::generate(
        &std::env::temp_dir().join(format!("tps-other-ca-{}", uuid::Uuid::new_v4().simple())),
    )
    .unwrap();
    let wrong_ca = stack.database_url.replace(
        &stack.postgres.tls().unwrap().ca_cert.display().to_string(),
        &other_ca.ca_cert.display().to_string(),
    );
    assert!(sqlx::PgPool::connect(&wrong_ca).await.is_err(), "an unknown CA is refused");

    // Redis: the TLS port answers a client that trusts the CA, and not one that does not.
    let ca = stack.redis.tls().unwrap().ca_cert.clone();
    let client = tps_runtime::redis_tls::client(&stack.redis.url(), Some(&ca)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.expect("TLS to redis");
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
    let untrusting = tps_runtime::redis_tls::client(&stack.redis.url(), Some(&other_ca.ca_cert)).unwrap();
    assert!(untrusting.get_multiplexed_async_connection().await.is_err(), "an unknown CA is refused");

    let ca_arg = ca.display().to_string();
    let api = TestApi::start_on(stack, &["--redis-ca-cert", &ca_arg]).await;
    let ready = api.get("/readyz").send().await.unwrap();
    let status = ready.status();
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(status, 200, "NATS, Postgres (TLS) and Redis (TLS) reachable: {body}");

    let ticket = api.ticket(10, 2).await;
    let read = api.get(&format!("/v1/tickets/{ticket}")).send().await.unwrap();
    assert_eq!(read.status(), 200);
    let first = api.order("tls-buyer", "k1", json!({"ticketId": ticket, "quantity": 1})).await;
    assert_eq!(first.status(), 202);
    let first: serde_json::Value = first.json().await.unwrap();
    // The replay is answered from the claim in Redis (over TLS).
    let again = api.order("tls-buyer", "k1", json!({"ticketId": ticket, "quantity": 1})).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<serde_json::Value>().await.unwrap()["id"], first["id"]);
    let metrics = api.http.get(&api.metrics_url).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l == "tps_api_redis_degraded_total 0"),
        "no order ran without Redis: {metrics}"
    );
    api.stop().await;
}
