//! Postgres stopped for a few seconds mid-flow: the worker waits it out by
//! itself, burns no deliveries, and ends with exact books.

mod common;

use std::time::Duration;

use common::{Harness, InProcess, order};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_recovers_from_a_postgres_outage_by_itself() {
    let mut h = Harness::start(2).await;
    let ticket = h.ticket_on(1, 300, 3).await;
    let worker = InProcess::start(h.config(&["--batch-size=50", "--max-deliveries=2"]));
    let first: Vec<_> = (0..200).map(|i| order(ticket, 1 + i % 3)).collect();
    h.publish(&first).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    h.stack.postgres.stop();
    let during: Vec<_> = (0..200).map(|i| order(ticket, 1 + i % 3)).collect();
    h.publish(&during).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    h.stack.postgres.start_again().await.unwrap();

    h.wait_settled(400, Duration::from_secs(40)).await;
    h.wait_drained(Duration::from_secs(20)).await;
    worker.stop().await;
    h.assert_exact(ticket, 300).await;
    assert_eq!(h.available(ticket).await, 0);
    let info = h.js.get_stream("DEAD_LETTERS").await.unwrap().info().await.unwrap().state.messages;
    assert_eq!(info, 0, "an outage is not the messages' fault: nothing is dead-lettered");
}
