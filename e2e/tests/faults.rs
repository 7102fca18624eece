//! Fault injection under load, on real processes. Every test ends with the same
//! verdict: 0 lost, 0 applied twice, 0 oversold, every 202 final, and the system
//! recovered without anyone touching it.

use std::time::Duration;

use tps_e2e::{Buyers, Outcome, create_ticket, settle_and_check};
use tps_testkit::{AppProcess, Stack};

const SHARDS: u32 = 4;

/// Starts buying `orders` of one ticket with `stock`, and runs `fault` while the buyers are busy.
async fn under_load(
    stack: &mut Stack,
    apis: &[&AppProcess],
    stock: u32,
    orders: usize,
    fault: impl AsyncFnOnce(&mut Stack),
) -> (uuid::Uuid, Outcome) {
    let ticket = create_ticket(apis[0].url(), stock, 2).await.unwrap();
    let bases = apis.iter().map(|a| a.url().to_owned()).collect();
    let plan = Buyers::plan(orders, orders / 4, ticket, |i| 1 + (i % 2) as u32, 25);
    let buyers = tokio::spawn(async move { Buyers::new(bases, 48).run(plan).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    fault(stack).await;
    let outcome = buyers.await.unwrap();
    assert_eq!(outcome.abandoned, 0, "clients gave up: {:?}", outcome.statuses);
    assert_eq!(outcome.inconsistent, 0, "a retried request got a different answer");
    (ticket, outcome)
}

async fn verdict(stack: &Stack, api: &AppProcess, ticket: uuid::Uuid, stock: u32, outcome: &Outcome) {
    let started = std::time::Instant::now();
    let ledger =
        settle_and_check(&stack.database_url, api.url(), outcome, Duration::from_secs(120)).await.unwrap();
    assert_eq!(ledger.sold[&ticket], i64::from(stock), "demand exceeded stock, so all of it is sold");
    // The measured outcome, quoted in RELIABILITY.md (run with --no-capture).
    let mut statuses: Vec<_> = outcome.statuses.iter().collect();
    statuses.sort();
    eprintln!(
        "outcome: accepted={} replays={} abandoned={} statuses={statuses:?} orders_in_db={} sold={}/{stock} settled_after_load={:.1}s",
        outcome.accepted.len(),
        outcome.replays,
        outcome.abandoned,
        ledger.orders,
        ledger.sold[&ticket],
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_killed_mid_batch_loses_and_repeats_nothing() {
    let mut stack = Stack::start().await.unwrap();
    let api = AppProcess::api(&stack, SHARDS, &[]).await.unwrap();
    let mut doomed = AppProcess::worker(&stack, SHARDS, &[]).await.unwrap();
    let _survivor = AppProcess::worker(&stack, SHARDS, &[]).await.unwrap();
    let (ticket, outcome) = under_load(&mut stack, &[&api], 1_500, 6_000, async |_| {
        doomed.kill();
    })
    .await;
    verdict(&stack, &api, ticket, 1_500, &outcome).await;
    // First come, first served across the kill: the heir settled the dead worker's held batch
    // before newer orders, so no SOLD_OUT order arrived before a CONFIRMED one.
    let pool = sqlx::PgPool::connect(&stack.database_url).await.unwrap();
    let overtaken: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders WHERE ticket_id = $1 AND reason = 'SOLD_OUT'
           AND stream_seq < (SELECT max(stream_seq) FROM orders WHERE ticket_id = $1 AND status = 'CONFIRMED')",
    )
    .bind(ticket)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(overtaken, 0, "orders got SOLD_OUT though they arrived before a confirmed one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_restarted_during_load_loses_nothing() {
    let mut stack = Stack::start().await.unwrap();
    let api = AppProcess::api(&stack, SHARDS, &[]).await.unwrap();
    let _worker = AppProcess::worker(&stack, SHARDS, &[]).await.unwrap();
    let (ticket, outcome) = under_load(&mut stack, &[&api], 1_500, 6_000, async |stack| {
        stack.nats.kill();
        tokio::time::sleep(Duration::from_secs(2)).await;
        stack.nats.start_again().await.unwrap();
    })
    .await;
    assert!(
        outcome.statuses.get(&503).copied().unwrap_or(0) > 0,
        "NATS down must answer 503: {:?}",
        outcome.statuses
    );
    verdict(&stack, &api, ticket, 1_500, &outcome).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_for_30s_the_api_keeps_accepting_and_workers_catch_up() {
    let mut stack = Stack::start().await.unwrap();
    let api = AppProcess::api(&stack, SHARDS, &[]).await.unwrap();
    let _worker = AppProcess::worker(&stack, SHARDS, &[]).await.unwrap();
    let (ticket, outcome) = under_load(&mut stack, &[&api], 1_500, 6_000, async |stack| {
        stack.postgres.stop();
        tokio::time::sleep(Duration::from_secs(30)).await;
        stack.postgres.start_again().await.unwrap();
    })
    .await;
    verdict(&stack, &api, ticket, 1_500, &outcome).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_during_load_keeps_exactly_once() {
    let mut stack = Stack::start().await.unwrap();
    let api = AppProcess::api(&stack, SHARDS, &[]).await.unwrap();
    let _worker = AppProcess::worker(&stack, SHARDS, &[]).await.unwrap();
    let (ticket, outcome) = under_load(&mut stack, &[&api], 1_500, 6_000, async |stack| {
        stack.redis.kill();
        tokio::time::sleep(Duration::from_secs(3)).await;
        // It comes back empty: leases and idempotency records are gone.
        stack.redis.start_again().await.unwrap();
    })
    .await;
    verdict(&stack, &api, ticket, 1_500, &outcome).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_sigterm_during_load_drains_and_loses_no_accepted_order() {
    let mut stack = Stack::start().await.unwrap();
    let mut leaving = AppProcess::api(&stack, SHARDS, &[]).await.unwrap();
    let staying = AppProcess::api(&stack, SHARDS, &[]).await.unwrap();
    let _worker = AppProcess::worker(&stack, SHARDS, &[]).await.unwrap();
    let apis = [&staying, &leaving];
    let urls: Vec<String> = apis.iter().map(|a| a.url().to_owned()).collect();
    let ticket = create_ticket(&urls[0], 1_500, 2).await.unwrap();
    let plan = Buyers::plan(6_000, 1_500, ticket, |i| 1 + (i % 2) as u32, 25);
    let buyers = tokio::spawn(async move { Buyers::new(urls, 48).run(plan).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let code = leaving.terminate(Duration::from_secs(20));
    assert_eq!(code, Some(0), "the api drains and exits cleanly on SIGTERM:\n{}", leaving.log_tail());
    let outcome = buyers.await.unwrap();
    assert_eq!(outcome.abandoned, 0, "{:?}", outcome.statuses);
    verdict(&stack, &staying, ticket, 1_500, &outcome).await;
    let _ = &mut stack;
}
