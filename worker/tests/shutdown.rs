//! SIGTERM: the worker finishes its batch, releases its leases and exits 0, and
//! another worker takes over within seconds.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, order};
use nix::sys::signal::Signal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_releases_and_exits_zero() {
    let h = Harness::start(4).await;
    let tickets = [h.ticket_on(0, 100, 2).await, h.ticket_on(3, 100, 2).await];
    let mut first = h.worker_process("first", &[("LEASE_TTL_MS", "30000")]);
    let batch: Vec<_> = tickets.iter().flat_map(|t| (0..50).map(move |_| order(*t, 1))).collect();
    h.publish(&batch).await;
    h.wait_settled(100, Duration::from_secs(20)).await;

    // With a 30 s ttl, only a release lets the second worker in quickly.
    let mut second = h.worker_process("second", &[("LEASE_TTL_MS", "30000")]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped = Instant::now();
    first.signal(Signal::SIGTERM).unwrap();
    let code = tokio::task::spawn_blocking(move || first.stop_with(Signal::SIGTERM, Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "a clean exit");

    let more: Vec<_> = tickets.iter().flat_map(|t| (0..50).map(move |_| order(*t, 1))).collect();
    h.publish(&more).await;
    h.wait_settled(200, Duration::from_secs(15)).await;
    assert!(stopped.elapsed() < Duration::from_secs(8), "takeover took {:?}", stopped.elapsed());
    assert!(second.is_running());
    for t in tickets {
        h.assert_exact(t, 100).await;
    }
}
