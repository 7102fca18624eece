//! Backpressure with a real nats-server: a full stream (discard new) and
//! consumers lagging past the bound both give 503 + Retry-After, and every 202
//! that was given is in the stream.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::PullConsumer;
use common::{SHARDS, TestApi, problem, stored_order_ids};
use futures::StreamExt;
use serde_json::{Value, json};
use tps_contract::streams::{StreamLimits, dead_letter_stream, orders_stream, shard_consumer, users_stream};
use tps_contract::subject::{ORDERS_STREAM, USERS_STREAM, consumer_name, order_subject};
use tps_testkit::{AppProcess, Stack};

async fn jetstream_of(stack: &Stack) -> jetstream::Context {
    jetstream::new(async_nats::connect(stack.nats.url()).await.unwrap())
}

/// Places orders until the first 503; returns the ids of the 202s before it.
async fn order_until_refused(api: &TestApi, user: &str, ticket: &Value, max: usize) -> Vec<String> {
    let mut accepted = Vec::new();
    for i in 0..max {
        let resp = api.order(user, &format!("k-{i}"), json!({"ticketId": ticket, "quantity": 1})).await;
        if resp.status() == 503 {
            assert_eq!(resp.headers()["retry-after"], "1");
            problem(resp, 503).await;
            return accepted;
        }
        assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
        accepted.push(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{max} orders and never refused");
}

#[tokio::test]
async fn a_full_stream_refuses_with_503_and_every_202_is_stored() {
    let stack = Stack::start().await.unwrap();
    // A tiny ORDERS stream, created before the api (which leaves existing streams as they are).
    let limits = StreamLimits { max_bytes: 4 * 1024, ..StreamLimits::default() };
    jetstream_of(&stack).await.create_stream(orders_stream(&limits)).await.unwrap();
    let api = TestApi::start_on(stack, &[]).await;
    let ticket = api.create_ticket("tiny", 1_000, 5).await["id"].clone();

    let accepted = order_until_refused(&api, "filler", &ticket, 200).await;
    assert!(accepted.len() >= 3, "some fit before it filled: {}", accepted.len());
    let stored: Vec<String> =
        stored_order_ids(&api.stack.nats.url()).await.iter().map(|id| id.to_string()).collect();
    assert_eq!(stored, accepted, "exactly the 202s are stored, in order");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_lagging_past_the_bound_get_503_until_a_worker_catches_up() {
    let stack = Stack::start().await.unwrap();
    let js = jetstream_of(&stack).await;
    let stream = js.create_stream(orders_stream(&StreamLimits::default())).await.unwrap();
    for shard in 0..SHARDS {
        stream.create_consumer(shard_consumer(ORDERS_STREAM, shard)).await.unwrap();
    }
    let api = TestApi::start_on(stack, &["--max-consumer-lag", "3", "--lag-poll-ms", "100"]).await;
    let ticket = api.create_ticket("lagging", 1_000, 5).await["id"].clone();

    // No worker runs: the lag grows by one per order until the watcher sees it past 3.
    let accepted = order_until_refused(&api, "early", &ticket, 40).await;
    assert!((4..=12).contains(&accepted.len()), "refused soon after the bound: {}", accepted.len());
    let stored = stored_order_ids(&api.stack.nats.url()).await;
    assert_eq!(stored.len(), accepted.len(), "no 202 beyond what is stored");
    let metrics = api.get("/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tps_api_order_consumer_lag"), "the lag is exported");

    // A worker drains the backlog and orders flow again, without a restart.
    let _worker = AppProcess::worker(&api.stack, SHARDS, &[("RUST_LOG", "warn")]).await.unwrap();
    let mut recovered = false;
    for i in 0..100 {
        let resp = api.order("late", &format!("late-{i}"), json!({"ticketId": ticket, "quantity": 1})).await;
        if resp.status() == 202 {
            recovered = true;
            break;
        }
        assert_eq!(resp.status(), 503);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "orders are accepted again once the worker caught up");
    let info = stream.consumer_info(consumer_name(ORDERS_STREAM, 0)).await.unwrap();
    assert!(info.num_pending <= 3, "{info:?}");
    api.stop().await;
}

fn signup(i: usize) -> Value {
    json!({
        "id": uuid::Uuid::new_v4(), "name": format!("lagging {i}"), "email": format!("lag-{i}@example.test"),
        "age": 30, "score": 1.0, "active": true, "country": "SE",
        "team": {"name": "t", "leader": false, "projects": []}, "logs": []
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_signup_consumers_refuse_signups_and_leave_orders_alone() {
    let stack = Stack::start().await.unwrap();
    let js = jetstream_of(&stack).await;
    let stream = js.create_stream(users_stream(&StreamLimits::default())).await.unwrap();
    for shard in 0..SHARDS {
        stream.create_consumer(shard_consumer(USERS_STREAM, shard)).await.unwrap();
    }
    let api = TestApi::start_on(stack, &["--max-consumer-lag", "3", "--lag-poll-ms", "100"]).await;
    let ticket = api.create_ticket("unaffected", 1_000, 5).await["id"].clone();

    // No worker: the sign-up lag passes 3 and sign-ups get 503 + Retry-After.
    let mut accepted = 0;
    let refused = loop {
        let resp = api.post("/v1/users").json(&signup(accepted)).send().await.unwrap();
        if resp.status() == 503 {
            break resp;
        }
        assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
        accepted += 1;
        assert!(accepted < 40, "never refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!((4..=12).contains(&accepted), "refused soon after the bound: {accepted}");
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(problem(refused, 503).await["detail"].as_str().unwrap().contains("sign-ups are backlogged"));
    let metrics = api.get("/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tps_api_signup_consumer_lag"), "the lag is exported");
    // Orders have their own gate: the sign-up backlog does not refuse them.
    assert_eq!(api.order("buyer", "k-1", json!({"ticketId": ticket, "quantity": 1})).await.status(), 202);
    api.stop().await;
}

/// The lag is a WorkQueue stream's message count. A stream an older release left with
/// Limits retention keeps its settled commands too, so there the consumers are asked:
/// settled commands never count as lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_commands_in_a_stream_not_yet_migrated_are_not_lag() {
    let stack = Stack::start().await.unwrap();
    let js = jetstream_of(&stack).await;
    let limits = StreamLimits::default();
    let legacy = jetstream::stream::Config {
        retention: jetstream::stream::RetentionPolicy::Limits,
        ..orders_stream(&limits)
    };
    let stream = js.create_stream(legacy).await.unwrap();
    js.create_stream(users_stream(&limits)).await.unwrap();
    js.create_stream(dead_letter_stream(&limits)).await.unwrap();
    for shard in 0..SHARDS {
        stream.create_consumer(shard_consumer(ORDERS_STREAM, shard)).await.unwrap();
    }
    // Five commands, delivered and acknowledged: settled, but still stored.
    for i in 0..5 {
        js.publish(order_subject(0), format!("settled {i}").into()).await.unwrap().await.unwrap();
    }
    let consumer: PullConsumer = stream.get_consumer(&consumer_name(ORDERS_STREAM, 0)).await.unwrap();
    let mut delivered = consumer.fetch().max_messages(5).messages().await.unwrap();
    while let Some(message) = delivered.next().await {
        message.unwrap().double_ack().await.unwrap();
    }
    assert_eq!(stream.clone().info().await.unwrap().state.messages, 5, "Limits retention keeps them");

    // Streams as they are (under the operator, the api creates and migrates nothing).
    let api = TestApi::start_on(
        stack,
        &["--max-consumer-lag", "3", "--lag-poll-ms", "100", "--nats-streams-create", "false"],
    )
    .await;
    // Exported from the first measurement on; five would mean the settled commands counted.
    api.metrics_with(&["tps_api_order_consumer_lag 0"]).await;
    let ticket = api.create_ticket("legacy", 1_000, 5).await["id"].clone();
    let resp = api.order("legacy", "l-1", json!({"ticketId": ticket, "quantity": 1})).await;
    assert_eq!(resp.status(), 202, "five settled commands are not a backlog past 3");
    api.stop().await;
}
