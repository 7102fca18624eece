//! Issue 9: after a small flash sale through the real binaries, `/metrics` of
//! the api and the worker show every metric an operator needs, with values
//! that match what was sent.

use std::time::Duration;

use tps_e2e::{Buyers, Outcome, Scrape, create_ticket, settle_and_check};
use tps_testkit::{AppProcess, Stack};

const SHARDS: u32 = 4;
const STOCK: u32 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_after_a_small_flash_sale_match_what_was_sent() {
    let stack = Stack::start().await.unwrap();
    let api = AppProcess::api(&stack, SHARDS, &[]).await.unwrap();
    let worker = AppProcess::worker(&stack, SHARDS, &[]).await.unwrap();
    let ticket = create_ticket(api.url(), STOCK, 5).await.unwrap();

    // 1,000 orders for 200 tickets; every 10th repeats the previous one (a replay).
    let plan = Buyers::plan(1_000, 300, ticket, |_| 1, 10);
    let outcome = Buyers::new(vec![api.url().to_owned()], 32).run(plan).await;
    assert_eq!(outcome.abandoned, 0, "{:?}", outcome.statuses);
    settle_and_check(&stack.database_url, api.url(), &outcome, Duration::from_secs(60)).await.unwrap();
    poison_one_command(&stack).await;

    // The gauges are polled each second and the dead letter takes a pull: wait for calm.
    let (api_page, worker_page) = wait_for_calm(&api, &worker).await;
    check_api(&api_page, &outcome);
    check_worker(&worker_page, &outcome);
    for url in [api.metrics_url(), worker.metrics_url()] {
        let resp = reqwest::get(url).await.unwrap();
        assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4", "{url}");
    }
}

/// Each metric has a `# HELP` line and this `# TYPE`.
fn check_types(page: &Scrape, expected: &[(&str, &str)]) {
    for (name, kind) in expected {
        assert_eq!(page.types.get(*name).map(String::as_str), Some(*kind), "{name}");
        assert!(page.help.contains_key(*name), "{name} has no help text");
    }
}

/// An undecodable command on shard 0, which the worker must dead-letter.
async fn poison_one_command(stack: &Stack) {
    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(nats);
    js.publish("orders.0", "not json".into()).await.unwrap().await.unwrap();
}

/// Scrapes both until the backlog is 0 on every shard and the dead letter is counted.
async fn wait_for_calm(api: &AppProcess, worker: &AppProcess) -> (Scrape, Scrape) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let api_page = Scrape::fetch(api.metrics_url()).await.unwrap();
        let worker_page = Scrape::fetch(worker.metrics_url()).await.unwrap();
        let drained = (0..SHARDS).all(|s| {
            let shard = s.to_string();
            let labels = [("shard", shard.as_str())];
            api_page.sum("tps_orders_backlog_messages", &labels) == Some(0.0)
                && api_page.sum("tps_orders_unacked_messages", &labels) == Some(0.0)
        });
        let dead = api_page.sum("tps_dead_letters_stored_messages", &[]) == Some(1.0)
            && worker_page.sum("tps_worker_dead_letters_total", &[("kind", "undecodable")]) == Some(1.0);
        let sold_out = api_page.sum("tps_tickets_available", &[]) == Some(0.0);
        if drained && dead && sold_out {
            return (api_page, worker_page);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no calm within 30 s: drained {drained}, dead letter {dead}, sold out {sold_out}\napi: {api_page:?}\nworker: {}",
            worker.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn status(outcome: &Outcome, code: u16) -> f64 {
    outcome.statuses.get(&code).copied().unwrap_or(0) as f64
}

fn check_api(page: &Scrape, outcome: &Outcome) {
    let orders = [("route", "/v1/orders"), ("method", "POST")];
    let with = |extra: (&'static str, &'static str)| [orders[0], orders[1], extra];
    assert_eq!(page.sum("tps_http_requests_total", &with(("status", "2xx"))), Some(status(outcome, 202)));
    assert_eq!(page.sum("tps_http_requests_total", &with(("status", "4xx"))), Some(status(outcome, 409)));
    assert_eq!(
        page.sum(
            "tps_http_requests_total",
            &[("route", "/v1/tickets"), ("method", "POST"), ("status", "2xx")]
        ),
        Some(1.0)
    );
    assert!(
        page.samples.iter().all(|s| !s.labels.values().any(|v| v.parse::<uuid::Uuid>().is_ok())),
        "an id in a label"
    );

    let requests = page.sum("tps_http_requests_total", &orders).unwrap();
    assert_eq!(page.sum("tps_http_request_duration_seconds_count", &orders), Some(requests));
    assert_eq!(
        page.sum("tps_http_request_duration_seconds_bucket", &[orders[0], orders[1], ("le", "+Inf")]),
        Some(requests)
    );

    let accepted = outcome.accepted.len() as f64;
    let degraded = page.sum("tps_api_redis_degraded_total", &[]).unwrap_or(0.0) > 0.0;
    let new_orders = page.sum("tps_api_orders_accepted_total", &[]).unwrap_or(0.0);
    // Each order's first answer counts it as new, even when its replay, sent at the same time,
    // stored the same command first (the PubAck then says duplicate). Only where a Redis call
    // timed out on a loaded machine (degraded) may an attempt the client never saw answered
    // have been stored, its retry then answered from Postgres or the stream as a replay.
    let recalls: Vec<_> = page.find("tps_api_idempotency_recalls_total", &[]).collect();
    if degraded {
        assert!(new_orders <= accepted, "{new_orders} new orders counted, {accepted} accepted; {recalls:?}");
        assert!(new_orders + outcome.replays as f64 >= accepted, "{new_orders} new + replays < {accepted}");
    } else {
        assert_eq!(new_orders, accepted, "new orders counted vs accepted; recalls {recalls:?}");
    }
    assert_eq!(page.sum("tps_api_idempotent_replays_total", &[]), Some(outcome.replays as f64));
    assert!(outcome.replays > 0);
    assert_eq!(page.sum("tps_api_sold_out_rejections_total", &[]), Some(status(outcome, 409)));
    assert_eq!(page.sum("tps_api_publish_failures_total", &[]), Some(0.0));
    // Every 202, replays included, was a publish that got its PubAck, except where a Redis
    // call timed out on a loaded machine (degraded): a key whose order is settled is then
    // answered from Postgres on a sold-out ticket, without a publish. New orders always are.
    let publishes = page.sum("tps_api_publish_duration_seconds_count", &[]).unwrap();
    if !degraded {
        assert_eq!(publishes, status(outcome, 202));
    } else {
        assert!(accepted <= publishes && publishes <= status(outcome, 202), "{publishes} publishes");
    }
    assert!(page.sum("tps_api_publish_duration_seconds_sum", &[]).unwrap() > 0.0);

    assert_eq!(page.sum("tps_shards_configured", &[]), Some(f64::from(SHARDS)));
    assert_eq!(page.sum("tps_tickets_sold_out", &[]), Some(1.0));
    assert_eq!(page.find("tps_orders_backlog_messages", &[]).count(), SHARDS as usize);

    check_types(
        page,
        &[
            ("tps_http_requests_total", "counter"),
            ("tps_http_request_duration_seconds", "histogram"),
            ("tps_api_publish_duration_seconds", "histogram"),
            ("tps_api_orders_accepted_total", "counter"),
            ("tps_api_idempotent_replays_total", "counter"),
            ("tps_orders_backlog_messages", "gauge"),
            ("tps_orders_unacked_messages", "gauge"),
            ("tps_dead_letters_stored_messages", "gauge"),
            ("tps_tickets_available", "gauge"),
            ("tps_shards_configured", "gauge"),
        ],
    );
    let latency = [
        "0.0005", "0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
        "+Inf",
    ];
    assert_eq!(page.buckets("tps_http_request_duration_seconds", &orders), latency);
    assert_eq!(page.buckets("tps_api_publish_duration_seconds", &[("stream", "orders")]), latency);
}

fn check_worker(page: &Scrape, outcome: &Outcome) {
    let orders = [("stream", "ORDERS")];
    let accepted = outcome.accepted.len() as f64;
    let final_outcomes: f64 = ["CONFIRMED", "SOLD_OUT", "INSUFFICIENT_STOCK", "INVALID"]
        .iter()
        .filter_map(|o| page.sum("tps_worker_settled_total", &[orders[0], ("outcome", o)]))
        .sum();
    assert_eq!(final_outcomes, accepted, "one settle per accepted order");
    assert_eq!(
        page.sum("tps_worker_settled_total", &[orders[0], ("outcome", "CONFIRMED")]),
        Some(f64::from(STOCK))
    );
    assert_eq!(page.sum("tps_worker_settle_lag_seconds_count", &orders), Some(accepted));

    let batches = page.sum("tps_worker_batch_size_count", &orders).unwrap();
    assert!(batches >= 1.0 && batches <= accepted, "{batches} batches for {accepted} orders");
    assert!(page.sum("tps_worker_batch_size_sum", &orders).unwrap() >= accepted);
    assert_eq!(page.sum("tps_worker_settle_seconds_count", &orders), Some(batches));

    assert_eq!(page.sum("tps_worker_lease_acquisitions_total", &orders), Some(f64::from(SHARDS)));
    assert_eq!(page.sum("tps_worker_lease_losses_total", &orders), Some(0.0));
    assert_eq!(page.sum("tps_worker_shards_owned", &orders), Some(f64::from(SHARDS)));
    for shard in 0..SHARDS {
        let shard = shard.to_string();
        assert_eq!(
            page.sum("tps_worker_shard_owned", &[orders[0], ("shard", &shard)]),
            Some(1.0),
            "shard {shard}"
        );
    }
    assert_eq!(
        page.sum("tps_worker_dead_letters_total", &[orders[0], ("kind", "max_deliveries")]),
        Some(0.0)
    );

    check_types(
        page,
        &[
            ("tps_worker_batch_size", "histogram"),
            ("tps_worker_settle_seconds", "histogram"),
            ("tps_worker_settle_lag_seconds", "histogram"),
            ("tps_worker_settled_total", "counter"),
            ("tps_worker_dead_letters_total", "counter"),
            ("tps_worker_recovered_total", "counter"),
            ("tps_worker_lease_acquisitions_total", "counter"),
            ("tps_worker_lease_losses_total", "counter"),
            ("tps_worker_shards_owned", "gauge"),
            ("tps_worker_shard_owned", "gauge"),
        ],
    );
    assert_eq!(
        page.buckets("tps_worker_batch_size", &orders),
        ["1", "5", "10", "25", "50", "100", "250", "500", "1000", "+Inf"]
    );
    assert_eq!(
        page.buckets("tps_worker_settle_seconds", &orders),
        ["0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"]
    );
    assert_eq!(
        page.buckets("tps_worker_settle_lag_seconds", &orders),
        [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "300",
            "+Inf"
        ]
    );
}
