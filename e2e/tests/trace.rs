//! Issue 9: one order followed end to end. The client's `traceparent` becomes
//! the api span's parent; the api puts its own span on the JetStream message;
//! the worker logs its settle span under the same trace id, child of the api's.

use std::time::Duration;

use serde_json::json;
use tps_contract::trace::TraceContext;
use tps_e2e::create_ticket;
use tps_testkit::{AppProcess, Stack};

const CLIENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_is_followed_from_the_api_span_to_the_worker_span() {
    let stack = Stack::start().await.unwrap();
    let api = AppProcess::api(&stack, 1, &[]).await.unwrap();
    let ticket = create_ticket(api.url(), 10, 5).await.unwrap();

    let resp = reqwest::Client::new()
        .post(format!("{}/v1/orders", api.url()))
        .bearer_auth(tps_testkit::token("tracer", false))
        .header("Idempotency-Key", "trace-1")
        .header("traceparent", CLIENT)
        .header("x-request-id", "req-trace-1")
        .json(&json!({"ticketId": ticket, "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["x-request-id"], "req-trace-1", "the request id is echoed");
    let client = TraceContext::parse(CLIENT).unwrap();
    let api_span = TraceContext::parse(resp.headers()["traceparent"].to_str().unwrap()).unwrap();
    assert_eq!(api_span.trace_id, client.trace_id, "the api continues the caller's trace");
    assert_ne!(api_span.span_id, client.span_id);

    // The header on the stored JetStream message is the api's span.
    let js = async_nats::jetstream::new(async_nats::connect(stack.nats.url()).await.unwrap());
    let stream = js.get_stream("ORDERS").await.unwrap();
    let stored = stream.get_last_raw_message_by_subject("orders.0").await.unwrap();
    let on_message = stored.headers.get("traceparent").map(|v| v.as_str().to_owned()).unwrap_or_default();
    assert_eq!(on_message, api_span.header());

    // Only now the worker: ORDERS holds unsettled commands only, so the message above is
    // gone once settled.
    let worker =
        AppProcess::worker(&stack, 1, &[("RUST_LOG", "info,tps_worker::trace=debug")]).await.unwrap();

    // The worker's settle span: same trace, parent = the api's span.
    let expected = format!("\"parent_span_id\":\"{}\"", api_span.span_id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = worker.log_tail();
        let line = log.lines().find(|l| l.contains(&client.trace_id) && l.contains("\"settled\""));
        if let Some(line) = line {
            assert!(line.contains(&expected), "{line}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the worker never logged the trace:\n{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A request without a traceparent starts a new trace, still carried through.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/orders", api.url()))
        .bearer_auth(tps_testkit::token("tracer", false))
        .header("Idempotency-Key", "trace-2")
        .json(&json!({"ticketId": ticket, "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert!(
        resp.headers().get("x-request-id").is_some_and(|v| !v.is_empty()),
        "an id is made up when none came"
    );
    let root = TraceContext::parse(resp.headers()["traceparent"].to_str().unwrap()).unwrap();
    assert_ne!(root.trace_id, client.trace_id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !worker.log_tail().contains(&root.trace_id) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never logged the new trace:\n{}",
            worker.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
