//! Prometheus metrics: the process-wide recorder and the RED middleware.
//!
//! Labels are the matched route template, the method and the status class, never
//! ids, so the number of series stays bounded whatever clients send.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets in seconds: the hot path lives between 0.5 ms and 50 ms.
const BUCKETS: &[f64] = &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The recorder's handle; installs the global recorder on first call (tests
/// start several servers in one process, and a recorder can be set only once).
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics shows only this one");
            }
            describe();
            handle
        })
        .clone()
}

/// Help texts, and the counters an operator alerts on registered at zero, so
/// `/metrics` shows them (and `rate()` works) before the first event.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "tps_http_requests_total",
        "HTTP requests by matched route template, method and status class."
    );
    describe_histogram!(
        "tps_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by route, method and status class."
    );
    describe_histogram!(
        "tps_api_publish_duration_seconds",
        Unit::Seconds,
        "JetStream publish until PubAck (or failure), by stream."
    );
    describe_counter!(
        "tps_api_publish_failures_total",
        "Publishes refused or timed out (answered 503), by stream."
    );
    describe_counter!("tps_api_queued_total", "Requests that waited for an in-flight slot and got one.");
    describe_counter!("tps_api_signups_accepted_total", "New sign-ups answered 202 (replays excluded).");
    describe_counter!(
        "tps_api_signup_replays_total",
        "Sign-ups answered from an earlier request with the same id and body."
    );
    describe_counter!("tps_api_orders_accepted_total", "New orders answered 202 (replays excluded).");
    describe_counter!(
        "tps_api_idempotent_replays_total",
        "Orders answered from an earlier request with the same key."
    );
    describe_counter!(
        "tps_api_sold_out_rejections_total",
        "Orders answered 409 SOLD_OUT without being queued."
    );
    describe_counter!("tps_api_redis_degraded_total", "Orders placed without Redis (degraded mode).");
    describe_gauge!(
        "tps_api_open_connections",
        "HTTP connections the api holds open (upgraded WebSockets leave it for tps_ws_clients)."
    );
    describe_counter!(
        "tps_api_connections_closed_total",
        "Connections closed on an error, by why: header_timeout (head not sent in time, or idle too long), bad_request, io."
    );
    describe_counter!(
        "tps_api_events_refused_total",
        "/v1/events connections refused with 429, by which cap was full: user or pod."
    );
    describe_gauge!(
        "tps_api_ticket_unknown_ids",
        "Unknown ticket ids remembered (bounded by API_UNKNOWN_TICKETS_MAX)."
    );
    describe_counter!(
        "tps_api_ticket_misses_total",
        "Lookups of ticket ids the cache did not hold, by answer: postgres (asked), remembered (known unknown), shed (lookup slots busy: 404 from the cache)."
    );
    describe_gauge!("tps_orders_backlog_messages", "Commands on a shard not yet delivered to a worker.");
    describe_gauge!("tps_orders_unacked_messages", "Commands on a shard delivered but not yet acknowledged.");
    describe_gauge!("tps_dead_letters_stored_messages", "Messages in the dead-letter stream.");
    describe_gauge!("tps_tickets_available", "Units left over every ticket, as the api's cache knows it.");
    describe_gauge!("tps_tickets_sold_out", "Tickets with nothing left.");
    describe_gauge!("tps_tickets_known", "Tickets in the api's cache.");
    describe_gauge!("tps_ws_clients", "WebSocket and SSE clients connected to GET /v1/events.");
    describe_counter!(
        "tps_api_events_dropped_clients_total",
        "Event clients disconnected because their queue was full."
    );
    describe_counter!("tps_api_events_received_total", "Worker events received from core NATS, by type.");
    describe_gauge!("tps_shards_configured", "SHARDS: how many shards the command streams have.");
    for stream in ["orders", "users"] {
        metrics::counter!("tps_api_publish_failures_total", "stream" => stream).absolute(0);
    }
    for name in [
        "tps_api_signups_accepted_total",
        "tps_api_signup_replays_total",
        "tps_api_orders_accepted_total",
        "tps_api_idempotent_replays_total",
        "tps_api_sold_out_rejections_total",
        "tps_api_redis_degraded_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
}

/// Drains histogram buffers now and then, as the exporter requires.
pub async fn upkeep_forever(handle: PrometheusHandle) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        handle.run_upkeep();
    }
}

/// RED per matched route: requests by status class, and duration.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let route = route.unwrap_or_else(|| "unmatched".to_owned());
    let status = status_class(response.status().as_u16());
    metrics::counter!("tps_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("tps_http_request_duration_seconds", "route" => route, "method" => method, "status" => status)
        .record(started.elapsed().as_secs_f64());
    response
}

/// `2xx`, `4xx`, …: five values, where exact codes would multiply series for little gain.
fn status_class(code: u16) -> &'static str {
    match code / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}
