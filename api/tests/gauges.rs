//! The backlog gauges against a real nats-server: every shard's undelivered and
//! unacknowledged commands, from one consumer-list request per sample, and the dead
//! letters stored.

mod common;

use async_nats::jetstream;
use async_nats::jetstream::consumer::PullConsumer;
use common::{SHARDS, TestApi};
use futures::StreamExt;
use serde_json::json;
use tps_contract::streams::{StreamLimits, orders_stream, shard_consumer};
use tps_contract::subject::{ORDERS_STREAM, consumer_name, dead_letter_subject};
use tps_testkit::Stack;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shard_shows_its_undelivered_and_unacked_commands() {
    let stack = Stack::start().await.unwrap();
    let js = jetstream::new(async_nats::connect(stack.nats.url()).await.unwrap());
    let stream = js.create_stream(orders_stream(&StreamLimits::default())).await.unwrap();
    for shard in 0..SHARDS {
        stream.create_consumer(shard_consumer(ORDERS_STREAM, shard)).await.unwrap();
    }
    let api = TestApi::start_on(stack, &[]).await;
    let ticket = api.create_ticket("gauged", 1_000, 5).await["id"].clone();
    let shard = tps_contract::shard_for(&ticket.as_str().unwrap().parse::<Uuid>().unwrap(), SHARDS);
    let other = (shard + 1) % SHARDS;

    // No worker: five commands wait on the ticket's shard, none elsewhere.
    for i in 0..5 {
        let resp = api.order("gauge", &format!("g-{i}"), json!({"ticketId": ticket, "quantity": 1})).await;
        assert_eq!(resp.status(), 202);
    }
    let line =
        |name: &str, shard: u32, n: u64| format!("tps_orders_{name}_messages{{shard=\"{shard}\"}} {n}");
    let (waiting, none_unacked, elsewhere) =
        (line("backlog", shard, 5), line("unacked", shard, 0), line("backlog", other, 0));
    api.metrics_with(&[&waiting, &none_unacked, &elsewhere]).await;

    // Two delivered and not acknowledged (a worker busy with them): 3 waiting, 2 unacked.
    let consumer: PullConsumer = stream.get_consumer(&consumer_name(ORDERS_STREAM, shard)).await.unwrap();
    let mut batch = consumer.fetch().max_messages(2).messages().await.unwrap();
    let mut held = Vec::new();
    while let Some(message) = batch.next().await {
        held.push(message.unwrap());
    }
    assert_eq!(held.len(), 2);
    let (waiting, unacked) = (line("backlog", shard, 3), line("unacked", shard, 2));
    let metrics = api.metrics_with(&[&waiting, &unacked]).await;
    let shards_shown = metrics.lines().filter(|l| l.starts_with("tps_orders_backlog_messages{")).count();
    assert_eq!(shards_shown, SHARDS as usize, "every shard's consumer, from one list");

    // Two dead letters stored (the api created the stream at start).
    for i in 0..2 {
        js.publish(dead_letter_subject(ORDERS_STREAM, shard), format!("poison {i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    api.metrics_with(&["tps_dead_letters_stored_messages 2"]).await;
    api.stop().await;
}
