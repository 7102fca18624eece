//! The `api` and `worker` binaries on a Postgres that takes TLS connections only
//! (`sslmode=verify-full` against the test CA) and a Redis on a TLS port only
//! (`rediss://` + `REDIS_CA_CERT`): a small flash sale settles exactly as on plain TCP.

use std::time::Duration;

use tps_e2e::{Buyers, create_ticket, settle_and_check};
use tps_testkit::{AppProcess, Stack};

const SHARDS: u32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flash_sale_settles_over_tls_to_postgres_and_redis() {
    let stack = Stack::start_tls().await.unwrap();
    let env = stack.env(SHARDS);
    let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
    assert!(get("DATABASE_URL").contains("sslmode=verify-full&sslrootcert="), "{}", get("DATABASE_URL"));
    assert!(get("REDIS_URL").starts_with("rediss://"));
    assert!(!get("REDIS_CA_CERT").is_empty());

    let api = AppProcess::api(&stack, SHARDS, &[]).await.unwrap();
    let worker = AppProcess::worker(&stack, SHARDS, &[]).await.unwrap();
    let ready: serde_json::Value =
        reqwest::get(format!("{}/readyz", api.url())).await.unwrap().json().await.unwrap();
    assert_eq!(ready["redis"], true, "{ready}");
    assert_eq!(ready["postgres"], true, "{ready}");

    let ticket = create_ticket(api.url(), 50, 2).await.unwrap();
    // 200 orders for 50 tickets; every 10th repeats the previous one.
    let plan = Buyers::plan(200, 80, ticket, |i| 1 + (i % 2) as u32, 10);
    let outcome = Buyers::new(vec![api.url().to_owned()], 16).run(plan).await;
    assert_eq!(outcome.abandoned, 0, "{:?}", outcome.statuses);
    let ledger = settle_and_check(&stack.database_url, api.url(), &outcome, Duration::from_secs(60)).await;
    let ledger = ledger.unwrap();
    println!(
        "outcome over TLS: accepted={} statuses={:?} ledger={ledger:?}",
        outcome.accepted.len(),
        outcome.statuses
    );
    assert_eq!(ledger.sold.get(&ticket), Some(&50), "demand exceeded stock: every ticket sold");
    // The worker's leases live in Redis: it could only settle by reaching it over TLS.
    let worker_metrics = reqwest::get(worker.metrics_url()).await.unwrap().text().await.unwrap();
    assert!(worker_metrics.contains("tps_worker_"), "the worker serves metrics");
}
