//! Issue 9 with the `otlp` feature: the api and worker binaries, built with
//! `--features otlp` (scripts/checks.d/otlp.sh builds them, then runs this with
//! `cargo nextest run -p tps-e2e --features otlp --test otlp`), export one
//! order's spans to a collector: the api's `POST /v1/orders` span with the ids
//! it echoes and puts on the message, flushed on SIGTERM, and the worker's
//! `settle` span, its child.
#![cfg(feature = "otlp")]

use std::time::Duration;

use serde_json::json;
use tps_contract::trace::TraceContext;
use tps_e2e::create_ticket;
use tps_testkit::{AppProcess, Stack};
use tps_testkit::{CollectedSpan, FakeCollector};

const CLIENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_is_exported_as_an_api_span_and_its_settle_span() {
    let collector = FakeCollector::start().await.unwrap();
    let stack = Stack::start().await.unwrap();
    // The api's batch is due only after an hour: its span can arrive only through the flush on SIGTERM.
    let api_env = [("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url()), ("OTEL_BSP_SCHEDULE_DELAY", "3600000")];
    let mut api = AppProcess::api(&stack, 1, &api_env).await.unwrap();
    let worker_env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_SERVICE_NAME", "settler"),
    ];
    let worker = AppProcess::worker(&stack, 1, &worker_env).await.unwrap();
    let ticket = create_ticket(api.url(), 10, 5).await.unwrap();

    let resp = reqwest::Client::new()
        .post(format!("{}/v1/orders", api.url()))
        .bearer_auth(tps_testkit::token("otlp", false))
        .header("Idempotency-Key", "otlp-1")
        .header("traceparent", CLIENT)
        .json(&json!({"ticketId": ticket, "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let client = TraceContext::parse(CLIENT).unwrap();
    let echoed = TraceContext::parse(resp.headers()["traceparent"].to_str().unwrap()).unwrap();
    let order: serde_json::Value = resp.json().await.unwrap();

    // The worker's settle span, exported in the background after the commit.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let settle = loop {
        if let Some(span) = collector.spans().into_iter().find(|s| s.field("name") == "settle") {
            break span;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no settle span reached the collector; were the binaries built with --features otlp?\n{}",
            worker.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(settle.service, "settler", "OTEL_SERVICE_NAME names the service");
    assert_eq!(settle.field("traceId"), client.trace_id, "the caller's trace");
    assert_eq!(settle.field("parentSpanId"), echoed.span_id, "the worker's parent is the api's span");
    assert_ne!(settle.field("spanId"), echoed.span_id);
    assert_eq!(settle.span["kind"], 5, "consumer");
    assert_eq!(settle.attribute("tps.stream"), Some(&json!({"stringValue": "ORDERS"})));
    assert_eq!(settle.attribute("tps.shard"), Some(&json!({"intValue": "0"})));
    assert!(settle.attribute("tps.seq").is_some(), "{:?}", settle.span);
    assert!(
        !collector.spans().iter().any(|s| s.field("name") == "POST /v1/orders"),
        "the api's batch is not due yet"
    );

    // SIGTERM: the api drains, flushes its queued span, and exits 0.
    let code = tokio::task::block_in_place(|| api.terminate(Duration::from_secs(20)));
    assert_eq!(code, Some(0), "{}", api.log_tail());
    let spans = collector.spans();
    let api_spans: Vec<&CollectedSpan> =
        spans.iter().filter(|s| s.field("name") == "POST /v1/orders").collect();
    assert_eq!(api_spans.len(), 1, "one span per accepted order, flushed on shutdown:\n{}", api.log_tail());
    let span = api_spans[0];
    assert_eq!(span.service, "tps-api", "the default service name");
    assert_eq!(span.field("traceId"), client.trace_id);
    assert_eq!(span.field("spanId"), echoed.span_id, "the span the api echoed and put on the message");
    assert_eq!(span.field("parentSpanId"), client.span_id, "the caller's span is the parent");
    assert_eq!(span.span["kind"], 2, "server");
    assert_eq!(span.attribute("http.response.status_code"), Some(&json!({"intValue": "202"})));
    assert_eq!(span.attribute("tps.order_id"), Some(&json!({"stringValue": order["id"]})));
}
