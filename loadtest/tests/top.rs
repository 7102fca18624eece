//! `loadtest top` as a process against two fake `/metrics` endpoints (an api and
//! a worker): it scrapes both and prints backlog, stock and shard owners.

use std::process::Command;

use axum::Router;
use axum::routing::get;

const API: &str = "tps_api_orders_accepted_total 10\ntps_orders_backlog_messages{shard=\"0\"} 3\n\
tps_orders_unacked_messages{shard=\"0\"} 1\ntps_orders_backlog_messages{shard=\"1\"} 0\n\
tps_orders_unacked_messages{shard=\"1\"} 0\ntps_tickets_available 1234\ntps_shards_configured 2\n\
tps_dead_letters_stored_messages 1\n";
const WORKER: &str = "tps_worker_shard_owned{stream=\"ORDERS\",shard=\"0\"} 1\n";

async fn serve(page: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, Router::new().route("/metrics", get(move || async move { page }))).await
    });
    format!("http://{addr}/metrics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_prints_one_screen_from_every_endpoint() {
    let (api, worker) = (serve(API).await, serve(WORKER).await);
    let urls = format!("{api},{worker},http://127.0.0.1:1/metrics");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_loadtest"))
            .args(["top", "--url", &urls, "--every", "200ms", "--iterations", "2"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{screen}\n{}", String::from_utf8_lossy(&output.stderr));
    let worker_host = worker.trim_start_matches("http://").trim_end_matches("/metrics");
    assert!(screen.contains("stock left         1234"), "{screen}");
    assert!(screen.contains("dead letters: 1"), "{screen}");
    assert!(
        screen.lines().any(|l| l.trim_start().starts_with("0        4  ") && l.ends_with(worker_host)),
        "{screen}"
    );
    assert!(screen.lines().any(|l| l.trim_start().starts_with("1        0  NO OWNER")), "{screen}");
    assert!(screen.contains("unreachable: 127.0.0.1:1"), "{screen}");
}
