//! A worker killed between its commit and its ack: the redelivered messages
//! change nothing, and everything still ends settled.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Harness, InProcess, order};
use sqlx::Row;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_after_a_crash_between_commit_and_ack_changes_nothing() {
    let h = Harness::start(2).await;
    let ticket = h.ticket_on(0, 40, 2).await;
    let commands: Vec<_> = (0..120).map(|i| order(ticket, 1 + i % 2)).collect();
    h.publish(&commands).await;

    let mut doomed =
        h.worker_process("doomed", &[("TPS_FAILPOINT", "crash-after-commit"), ("BATCH_SIZE", "50")]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while doomed.is_running() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failpoint never fired:\n{}",
            doomed.log_tail(3000)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let committed = snapshot(&h).await;
    assert!(!committed.is_empty(), "the first batch committed before the crash");
    assert!(committed.len() < commands.len(), "only the first batch committed");
    let stock_after_crash = h.available(ticket).await;

    let worker = InProcess::start(h.config(&["--batch-size=50"]));
    h.wait_settled(commands.len() as i64, Duration::from_secs(40)).await;
    h.wait_drained(Duration::from_secs(30)).await;
    worker.stop().await;

    let after = snapshot(&h).await;
    for (id, row) in &committed {
        assert_eq!(after.get(id), Some(row), "order {id} changed on redelivery");
    }
    let confirmed_before: i64 =
        committed.values().filter(|r| r.0 == "CONFIRMED").map(|r| i64::from(r.2)).sum();
    assert_eq!(
        stock_after_crash,
        40 - confirmed_before,
        "the crashed batch's decrement is exactly its grants"
    );
    h.assert_exact(ticket, 40).await;
    assert_eq!(h.available(ticket).await, 0);
}

/// id → (status, processed_at, quantity) of every settled order.
async fn snapshot(h: &Harness) -> HashMap<uuid::Uuid, (String, chrono::DateTime<chrono::Utc>, i32)> {
    sqlx::query("SELECT id, status, processed_at, quantity FROM orders")
        .fetch_all(&h.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("id"), (r.get("status"), r.get("processed_at"), r.get("quantity"))))
        .collect()
}
