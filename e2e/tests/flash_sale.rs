//! The flash sale of issue 2, through the real binaries: 20,000 orders with
//! duplicate keys mixed in, from 2,000 users, for one ticket of 1,000.

use std::time::Duration;

use tps_e2e::{Buyers, create_ticket, settle_and_check};
use tps_testkit::{AppProcess, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_thousand_orders_for_a_thousand_tickets_sell_exactly_a_thousand() {
    let stack = Stack::start().await.unwrap();
    let api = AppProcess::api(&stack, 4, &[]).await.unwrap();
    let _worker = AppProcess::worker(&stack, 4, &[]).await.unwrap();
    let ticket = create_ticket(api.url(), 1_000, 5).await.unwrap();

    // Every 10th order repeats the previous one (same user, key and body): a replay.
    let plan = Buyers::plan(20_000, 2_000, ticket, |_| 1, 10);
    let outcome = Buyers::new(vec![api.url().to_owned()], 128).run(plan).await;

    assert_eq!(outcome.abandoned, 0, "{:?}", outcome.statuses);
    // 20,000 requests minus the 1,999 repeats: every distinct order got a final answer,
    // either 202 or, once the api knew the ticket was sold out, 409.
    assert_eq!(outcome.answers.len(), 18_001, "{:?}", outcome.statuses);
    assert!(outcome.answers.values().all(|s| *s == 202 || *s == 409), "{:?}", outcome.statuses);
    assert_eq!(outcome.inconsistent, 0, "a repeated request got a different answer than the original");
    assert!(outcome.replays > 0, "replays are answered with Idempotent-Replayed: true");

    let ledger =
        settle_and_check(&stack.database_url, api.url(), &outcome, Duration::from_secs(90)).await.unwrap();
    assert_eq!(ledger.sold[&ticket], 1_000, "demand exceeds stock, so every ticket is sold");
    assert_eq!(ledger.available[&ticket], 0);
    assert_eq!(ledger.orders, outcome.accepted.len(), "every 202 is one order row");
}
