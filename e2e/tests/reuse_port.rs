//! `API_REUSE_PORT`: several api processes on one port (`SO_REUSEPORT`), as pods
//! behind a Service (`TPS_APIS=N scripts/dev up`). Both bind the same port and new
//! connections reach both; without the flag a second api cannot take a bound port.

use std::time::Duration;

use tps_testkit::{AppProcess, Stack, binary, free_port};

/// Requests `/v1/tickets` answered by the process whose `/metrics` this is.
async fn listings_served(metrics_url: &str) -> u64 {
    let text = reqwest::get(metrics_url).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("tps_http_requests_total{") && l.contains(r#"route="/v1/tickets""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_processes_share_one_port_and_both_answer() {
    let stack = Stack::start().await.unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let shared = [("API_LISTEN", listen.as_str()), ("API_REUSE_PORT", "true")];
    let first = AppProcess::api(&stack, 4, &shared).await.unwrap();
    let mut second = AppProcess::api(&stack, 4, &shared).await.unwrap();
    assert!(second.is_running(), "the second api bound the taken port:\n{}", second.log_tail());

    // Each request on a new connection (a new source port), which the kernel hashes
    // over the two accept queues: all 64 landing on one process would be chance 2^-63.
    const REQUESTS: u64 = 64;
    for _ in 0..REQUESTS {
        let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        let resp = client.get(format!("http://{listen}/v1/tickets")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let served = [listings_served(first.metrics_url()).await, listings_served(second.metrics_url()).await];
    assert!(served.iter().all(|n| *n > 0), "both processes answered: {served:?}");
    assert_eq!(served.iter().sum::<u64>(), REQUESTS, "{served:?}");

    // Without the flag, a third api refuses to start on the taken port.
    let alone = tokio::process::Command::new(binary("api").unwrap())
        .envs(stack.env(4).into_iter().filter(|(k, _)| k != "API_LISTEN"))
        .env("API_LISTEN", &listen)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), alone).await.expect("it exits").unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second api without API_REUSE_PORT bound the port:\n{log}");
    assert!(log.to_lowercase().contains("address"), "{log}");
}
