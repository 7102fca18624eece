//! Everything a shard runner logs carries its span (`shard_runner{stream, shard,
//! token}`), and everything logged while a batch settles the `settle{batch,
//! first_seq}` span inside it, so one shard's story can be read out of the logs.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Harness, InProcess, order};
use serde_json::Value;

/// A log sink shared with the test.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_batches_are_logged_inside_the_runner_and_settle_spans() {
    let sink = Sink::default();
    let writer = sink.clone();
    tracing_subscriber::fmt()
        .json()
        .with_span_list(true)
        .with_env_filter("tps_worker=debug")
        .with_writer(move || writer.clone())
        .init();

    let h = Harness::start(2).await;
    let ticket = h.ticket_on(1, 10, 5).await;
    h.publish(&[order(ticket, 1), order(ticket, 2), order(ticket, 3)]).await;
    let worker = InProcess::start(h.config(&[]));
    h.wait_settled(3, Duration::from_secs(20)).await;
    worker.stop().await;

    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let settled: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "batch settled")
        .collect();
    assert!(!settled.is_empty(), "a 'batch settled' line:\n{text}");
    let mut orders = 0;
    for line in &settled {
        let spans = line["spans"].as_array().expect("the span list");
        let runner = spans.iter().find(|s| s["name"] == "shard_runner").expect("inside shard_runner");
        let settle = spans.iter().find(|s| s["name"] == "settle").expect("inside settle");
        if runner["stream"] == "ORDERS" {
            assert_eq!(runner["shard"], 1, "the ticket's shard: {line}");
            assert!(runner["token"].as_i64().is_some_and(|t| t > 0), "the fencing token: {line}");
            assert!(settle["first_seq"].as_u64().is_some_and(|s| s >= 1), "{line}");
            orders += settle["batch"].as_u64().unwrap();
        }
    }
    assert_eq!(orders, 3, "every order settled in a logged batch of the ORDERS runner of shard 1");
}
