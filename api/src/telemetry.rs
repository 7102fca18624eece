//! Prometheus metrics: the catalogue of the api's metrics, registered once per
//! process on a registry of its own, and the RED middleware.
//!
//! Labels are the matched route template, the method and the status class, never
//! ids, so the number of series stays bounded whatever clients send.

use std::sync::LazyLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};
use tps_runtime::metrics::{
    Children, counter, counter_vec, expose, gauge, gauge_vec, histogram, histogram_vec, unregistered_gauge,
};

/// Latency buckets in seconds: the hot path lives between 0.5 ms and 50 ms.
const BUCKETS: &[f64] = &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Lookups per Postgres statement of the micro-batcher, up to its cap (`recall::MAX_BATCH`).
const RECALL_BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 512.0];

/// The api's metrics, made on first use. One per process, as every handler, task and
/// connection reaches it without a handle: tests that start several servers in one
/// process share it.
pub fn metrics() -> &'static ApiMetrics {
    static METRICS: LazyLock<ApiMetrics> = LazyLock::new(ApiMetrics::new);
    &METRICS
}

/// Every metric of the api, registered with its help text on a registry of its own
/// (never the `prometheus` crate's global one). The counters an operator alerts on
/// are registered at zero, so `/metrics` shows them (and `rate()` works) before the
/// first event; a labelled series shows from its first event.
pub struct ApiMetrics {
    registry: Registry,
    /// `tps_http_requests_total{route,method,status}`.
    pub http_requests: IntCounterVec,
    /// `tps_http_request_duration_seconds{route,method,status}`.
    pub http_request_duration: HistogramVec,
    /// `tps_api_publish_duration_seconds{stream}` (`orders`, `users`).
    pub publish_duration: Children<Histogram, 2>,
    /// `tps_api_publish_failures_total{stream}` (`orders`, `users`), at zero from the start.
    pub publish_failures: Children<IntCounter, 2>,
    /// `tps_api_queued_total`.
    pub queued: IntCounter,
    /// `tps_api_shed_total{why}`.
    pub shed: Children<IntCounter, 5>,
    /// `tps_api_rate_limited_total{by}` (`user`, `ip`).
    pub rate_limited: Children<IntCounter, 2>,
    /// `tps_api_signups_accepted_total`.
    pub signups_accepted: IntCounter,
    /// `tps_api_signup_replays_total`.
    pub signup_replays: IntCounter,
    /// `tps_api_orders_accepted_total`.
    pub orders_accepted: IntCounter,
    /// `tps_api_idempotent_replays_total`.
    pub idempotent_replays: IntCounter,
    /// `tps_api_sold_out_rejections_total`.
    pub sold_out_rejections: IntCounter,
    /// `tps_api_redis_degraded_total`.
    pub redis_degraded: IntCounter,
    /// `tps_api_redis_slow_waits_total`.
    pub redis_slow_waits: IntCounter,
    /// `tps_api_redis_data_lost_total`.
    pub redis_data_lost: IntCounter,
    /// `tps_api_claims_in_doubt`.
    pub claims_in_doubt: IntGauge,
    /// `tps_api_idempotency_recalls_total{kind,outcome}`.
    pub idempotency_recalls: IntCounterVec,
    /// `tps_api_recall_batch_size`.
    pub recall_batch_size: Histogram,
    /// `tps_api_order_event_delay_seconds`: commit to this pod's fan-out.
    pub order_event_delay: Histogram,
    /// `tps_api_push_delay_seconds`: commit to the update written to a WebSocket.
    pub push_delay: Histogram,
    /// `tps_api_dead_letters_replayed_total`.
    pub dead_letters_replayed: IntCounter,
    /// `tps_api_open_connections`.
    pub open_connections: IntGauge,
    /// `tps_api_connections_closed_total{why}`.
    pub connections_closed: Children<IntCounter, 3>,
    /// `tps_api_events_refused_total{by}` (`user`, `pod`).
    pub events_refused: Children<IntCounter, 2>,
    /// `tps_api_events_dropped_clients_total{reason}` (`slow`).
    pub events_dropped_clients: Children<IntCounter, 1>,
    /// `tps_api_events_received_total{type}` (`order`, `ticket`).
    pub events_received: Children<IntCounter, 2>,
    /// `tps_ws_clients`.
    pub ws_clients: IntGauge,
    /// `tps_api_ticket_unknown_ids`.
    pub ticket_unknown_ids: IntGauge,
    /// `tps_api_ticket_misses_total{answer}`.
    pub ticket_misses: Children<IntCounter, 3>,
    /// `tps_api_order_consumer_lag`: registered by [`ApiMetrics::expose`] only when the lag bound is on.
    pub order_consumer_lag: IntGauge,
    /// `tps_api_signup_consumer_lag`: the same for sign-ups.
    pub signup_consumer_lag: IntGauge,
    /// `tps_orders_backlog_messages{shard}`.
    pub orders_backlog: IntGaugeVec,
    /// `tps_orders_unacked_messages{shard}`.
    pub orders_unacked: IntGaugeVec,
    /// `tps_dead_letters_stored_messages`.
    pub dead_letters_stored: IntGauge,
    /// `tps_tickets_available`.
    pub tickets_available: IntGauge,
    /// `tps_tickets_sold_out`.
    pub tickets_sold_out: IntGauge,
    /// `tps_tickets_known`.
    pub tickets_known: IntGauge,
    /// `tps_shards_configured`.
    pub shards_configured: IntGauge,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ApiMetrics {
    /// Registers the whole catalogue on a new registry.
    pub fn new() -> Self {
        let r = Registry::new();
        let route = &["route", "method", "status"];
        Self {
            http_requests: counter_vec(
                &r,
                "tps_http_requests_total",
                "HTTP requests by matched route template, method and status class.",
                route,
            ),
            http_request_duration: histogram_vec(
                &r,
                "tps_http_request_duration_seconds",
                "HTTP request latency by route, method and status class.",
                route,
                BUCKETS,
            ),
            publish_duration: Children::new(
                histogram_vec(
                    &r,
                    "tps_api_publish_duration_seconds",
                    "JetStream publish until PubAck (or failure), by stream.",
                    &["stream"],
                    BUCKETS,
                ),
                ["orders", "users"],
            ),
            publish_failures: Children::new(
                counter_vec(
                    &r,
                    "tps_api_publish_failures_total",
                    "Publishes refused or timed out (answered 503), by stream.",
                    &["stream"],
                ),
                ["orders", "users"],
            )
            .zero(),
            queued: counter(
                &r,
                "tps_api_queued_total",
                "Requests that waited for an in-flight slot and got one.",
            ),
            shed: Children::new(
                counter_vec(
                    &r,
                    "tps_api_shed_total",
                    "Requests shed before routing, by why: in_flight, postgres_down, consumer_lag, deadline \
                     (503), body_deadline (408).",
                    &["why"],
                ),
                ["in_flight", "postgres_down", "consumer_lag", "deadline", "body_deadline"],
            ),
            rate_limited: Children::new(
                counter_vec(
                    &r,
                    "tps_api_rate_limited_total",
                    "Requests answered 429 by a rate limit, by who was limited: user or ip.",
                    &["by"],
                ),
                ["user", "ip"],
            ),
            signups_accepted: counter(
                &r,
                "tps_api_signups_accepted_total",
                "New sign-ups answered 202 (replays excluded).",
            ),
            signup_replays: counter(
                &r,
                "tps_api_signup_replays_total",
                "Sign-ups answered from an earlier request with the same id and body.",
            ),
            orders_accepted: counter(
                &r,
                "tps_api_orders_accepted_total",
                "New orders answered 202 (replays excluded).",
            ),
            idempotent_replays: counter(
                &r,
                "tps_api_idempotent_replays_total",
                "Orders answered from an earlier request with the same key.",
            ),
            sold_out_rejections: counter(
                &r,
                "tps_api_sold_out_rejections_total",
                "Orders answered 409 SOLD_OUT without being queued.",
            ),
            redis_degraded: counter(
                &r,
                "tps_api_redis_degraded_total",
                "Orders placed without Redis (degraded mode).",
            ),
            redis_slow_waits: counter(
                &r,
                "tps_api_redis_slow_waits_total",
                "Redis calls that passed API_REDIS_TIMEOUT_MS while Redis answered other calls, and were given another bound instead of failing.",
            ),
            redis_data_lost: counter(
                &r,
                "tps_api_redis_data_lost_total",
                "Times this pod found the tps:epoch marker gone or changed: Redis lost its data.",
            ),
            claims_in_doubt: gauge(
                &r,
                "tps_api_claims_in_doubt",
                "1 while a key without a Redis claim may still have an unsettled order, else 0.",
            ),
            idempotency_recalls: counter_vec(
                &r,
                "tps_api_idempotency_recalls_total",
                "Keys without a Redis claim checked against Postgres (and the stream), by kind and outcome.",
                &["kind", "outcome"],
            ),
            recall_batch_size: histogram(
                &r,
                "tps_api_recall_batch_size",
                "Lookups per Postgres statement of the micro-batcher.",
                RECALL_BATCH_BUCKETS,
            ),
            order_event_delay: histogram(
                &r,
                "tps_api_order_event_delay_seconds",
                "From an order's commit (processedAt) to its event reaching this pod's fan-out; the \
                 rest of commit-to-client is the push to the socket and the network.",
                BUCKETS,
            ),
            push_delay: histogram(
                &r,
                "tps_api_push_delay_seconds",
                "From an order's commit (processedAt) to its update written to a WebSocket of this pod \
                 (the kernel's send buffer); the rest of commit-to-client is the network and the client.",
                BUCKETS,
            ),
            dead_letters_replayed: counter(
                &r,
                "tps_api_dead_letters_replayed_total",
                "Dead letters replayed through POST /v1/admin/dead-letters/{id}/replay.",
            ),
            open_connections: gauge(
                &r,
                "tps_api_open_connections",
                "HTTP connections the api holds open (upgraded WebSockets leave it for tps_ws_clients).",
            ),
            connections_closed: Children::new(
                counter_vec(
                    &r,
                    "tps_api_connections_closed_total",
                    "Connections closed on an error, by why: header_timeout (head not sent in time, or idle \
                     too long), bad_request, io.",
                    &["why"],
                ),
                ["header_timeout", "bad_request", "io"],
            ),
            events_refused: Children::new(
                counter_vec(
                    &r,
                    "tps_api_events_refused_total",
                    "/v1/events connections refused with 429, by which cap was full: user or pod.",
                    &["by"],
                ),
                ["user", "pod"],
            ),
            events_dropped_clients: Children::new(
                counter_vec(
                    &r,
                    "tps_api_events_dropped_clients_total",
                    "Event clients disconnected because their queue was full.",
                    &["reason"],
                ),
                ["slow"],
            ),
            events_received: Children::new(
                counter_vec(
                    &r,
                    "tps_api_events_received_total",
                    "Worker events received from core NATS, by type.",
                    &["type"],
                ),
                ["order", "ticket"],
            ),
            ws_clients: gauge(&r, "tps_ws_clients", "WebSocket and SSE clients connected to GET /v1/events."),
            ticket_unknown_ids: gauge(
                &r,
                "tps_api_ticket_unknown_ids",
                "Unknown ticket ids remembered (bounded by API_UNKNOWN_TICKETS_MAX).",
            ),
            ticket_misses: Children::new(
                counter_vec(
                    &r,
                    "tps_api_ticket_misses_total",
                    "Lookups of ticket ids the cache did not hold, by answer: postgres (asked), remembered \
                     (known unknown), shed (lookup slots busy: 404 from the cache).",
                    &["answer"],
                ),
                ["postgres", "remembered", "shed"],
            ),
            order_consumer_lag: unregistered_gauge(
                "tps_api_order_consumer_lag",
                "Orders not yet acknowledged by a worker, summed over the shards, as the backpressure \
                 guard last measured.",
            ),
            signup_consumer_lag: unregistered_gauge(
                "tps_api_signup_consumer_lag",
                "Sign-ups not yet acknowledged by a worker, summed over the shards, as the backpressure \
                 guard last measured.",
            ),
            orders_backlog: gauge_vec(
                &r,
                "tps_orders_backlog_messages",
                "Commands on a shard not yet delivered to a worker.",
                &["shard"],
            ),
            orders_unacked: gauge_vec(
                &r,
                "tps_orders_unacked_messages",
                "Commands on a shard delivered but not yet acknowledged.",
                &["shard"],
            ),
            dead_letters_stored: gauge(
                &r,
                "tps_dead_letters_stored_messages",
                "Messages in the dead-letter stream.",
            ),
            tickets_available: gauge(
                &r,
                "tps_tickets_available",
                "Units left over every ticket, as the api's cache knows it.",
            ),
            tickets_sold_out: gauge(&r, "tps_tickets_sold_out", "Tickets with nothing left."),
            tickets_known: gauge(&r, "tps_tickets_known", "Tickets in the api's cache."),
            shards_configured: gauge(
                &r,
                "tps_shards_configured",
                "SHARDS: how many shards the command streams have.",
            ),
            registry: r,
        }
    }

    /// The registry `/metrics` renders.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Shows `gauge`, one of the metrics registered only when they apply (the consumer lags).
    pub fn expose(&self, gauge: &IntGauge) {
        expose(&self.registry, gauge);
    }
}

/// A count as a gauge's value (an `i64`), saturating.
pub fn gauge_value(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// RED per matched route: requests by status class, and duration.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let labels = [route, method.as_str(), status_class(response.status().as_u16())];
    let m = metrics();
    m.http_requests.with_label_values(&labels).inc();
    m.http_request_duration.with_label_values(&labels).observe(started.elapsed().as_secs_f64());
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

#[cfg(test)]
mod tests {
    use tps_testkit::Scrape;
    use tps_testkit::metrics::documented;

    use super::*;

    #[test]
    fn the_catalogue_is_the_documented_one_with_its_types_and_help() {
        let m = ApiMetrics::new();
        // A labelled series shows from its first event, a consumer lag once exposed: one of each.
        let route = ["/v1/orders", "POST", "2xx"];
        m.http_requests.with_label_values(&route).inc();
        m.http_request_duration.with_label_values(&route).observe(0.003);
        m.publish_duration.get("orders").observe(0.001);
        m.shed.get("deadline").inc();
        m.rate_limited.get("ip").inc();
        m.idempotency_recalls.with_label_values(&["order", "none"]).inc();
        m.connections_closed.get("io").inc();
        m.events_refused.get("pod").inc();
        m.events_dropped_clients.get("slow").inc();
        m.events_received.get("order").inc();
        m.ticket_misses.get("shed").inc();
        m.orders_backlog.with_label_values(&["0"]).set(1);
        m.orders_unacked.with_label_values(&["0"]).set(1);
        m.expose(&m.order_consumer_lag);
        m.expose(&m.signup_consumer_lag);
        let page = Scrape::parse(&tps_runtime::metrics::render(m.registry()).unwrap());
        let docs = documented(include_str!("../../docs/observability.md"), &["api", "Live updates"]);
        assert_eq!(page.types, docs, "registered vs docs/observability.md");
        assert_eq!(page.help.keys().collect::<Vec<_>>(), docs.keys().collect::<Vec<_>>(), "help texts");
        assert_eq!(
            page.buckets("tps_http_request_duration_seconds", &[]).len(),
            BUCKETS.len() + 1,
            "the latency buckets and +Inf"
        );
    }

    #[test]
    fn a_second_catalogue_is_independent_of_the_first() {
        let (a, b) = (ApiMetrics::new(), ApiMetrics::new());
        a.orders_accepted.inc();
        let text = tps_runtime::metrics::render(b.registry()).unwrap();
        assert!(text.lines().any(|l| l == "tps_api_orders_accepted_total 0"), "{text}");
    }
}
