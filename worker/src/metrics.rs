//! Prometheus metrics of the worker. Labels are small closed sets; never ids.

use std::borrow::Cow;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};
use tps_contract::subject::{ORDERS_STREAM, USERS_STREAM};
use tps_runtime::metrics::{Children, counter_vec, gauge_vec, histogram_vec};

/// The streams every stream-labelled series is cached for.
const STREAMS: [&str; 2] = [ORDERS_STREAM, USERS_STREAM];

/// Every outcome a settle reports (final statuses and reasons of orders and sign-ups,
/// and `DUPLICATE`); another one still counts, through the vector's lookup.
const OUTCOMES: [&str; 8] = [
    "CONFIRMED",
    "SOLD_OUT",
    "INSUFFICIENT_STOCK",
    "INVALID",
    "CREATED",
    "DUPLICATE_EMAIL",
    "REJECTED",
    "DUPLICATE",
];

/// How a message came to be dead-lettered.
const DEAD_LETTER_KINDS: [&str; 2] = ["undecodable", "max_deliveries"];

/// The worker's metrics, made on first use. One per process: in-process tests start
/// several workers, which share it.
pub fn metrics() -> &'static WorkerMetrics {
    static METRICS: LazyLock<WorkerMetrics> = LazyLock::new(WorkerMetrics::new);
    &METRICS
}

/// Every metric of the worker, registered with its help text on a registry of its own
/// (never the `prometheus` crate's global one). The counters an operator alerts on are
/// registered at zero, so `/metrics` shows them (and `rate()` works) before the first
/// event; other series show from their first event.
pub struct WorkerMetrics {
    registry: Registry,
    batch_size: Children<Histogram, 2>,
    transaction_shards: Children<Histogram, 2>,
    settle_seconds: Children<Histogram, 2>,
    settle_lag: Children<Histogram, 2>,
    settled: IntCounterVec,
    settled_by_outcome: [Children<IntCounter, 8>; 2],
    transient_errors: Children<IntCounter, 2>,
    dead_letters: IntCounterVec,
    dead_letters_by_kind: [Children<IntCounter, 2>; 2],
    recovered: Children<IntCounter, 2>,
    lease_acquisitions: Children<IntCounter, 2>,
    lease_losses: Children<IntCounter, 2>,
    shards_owned: Children<IntGauge, 2>,
    shard_owned: IntGaugeVec,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerMetrics {
    /// Registers the whole catalogue on a new registry.
    pub fn new() -> Self {
        let r = Registry::new();
        let by_stream = |vec| Children::new(vec, STREAMS);
        let settled = counter_vec(
            &r,
            "tps_worker_settled_total",
            "Commands settled, by outcome.",
            &["stream", "outcome"],
        );
        let dead_letters = counter_vec(
            &r,
            "tps_worker_dead_letters_total",
            "Commands moved to the dead-letter stream, by kind.",
            &["stream", "kind"],
        );
        Self {
            batch_size: Children::new(
                histogram_vec(
                    &r,
                    "tps_worker_batch_size",
                    "Commands per committed batch.",
                    &["stream"],
                    &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0],
                ),
                STREAMS,
            ),
            transaction_shards: Children::new(
                histogram_vec(
                    &r,
                    "tps_worker_transaction_shards",
                    "Shards whose batches one settling transaction took together.",
                    &["stream"],
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
                ),
                STREAMS,
            ),
            settle_seconds: Children::new(
                histogram_vec(
                    &r,
                    "tps_worker_settle_seconds",
                    "Time to settle one batch (pull excluded).",
                    &["stream"],
                    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
                ),
                STREAMS,
            ),
            settle_lag: Children::new(
                histogram_vec(
                    &r,
                    "tps_worker_settle_lag_seconds",
                    "From the api's accept (202) to the commit that settled the command.",
                    &["stream"],
                    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0],
                ),
                STREAMS,
            ),
            settled_by_outcome: STREAMS.map(|stream| {
                let settled = settled.clone();
                Children::from_fn(OUTCOMES, move |outcome| settled.with_label_values(&[stream, outcome]))
            }),
            settled,
            transient_errors: by_stream(counter_vec(
                &r,
                "tps_worker_transient_errors_total",
                "Batches rolled back by a transient error and retried.",
                &["stream"],
            )),
            dead_letters_by_kind: STREAMS.map(|stream| {
                let dead_letters = dead_letters.clone();
                Children::from_fn(DEAD_LETTER_KINDS, move |kind| {
                    dead_letters.with_label_values(&[stream, kind])
                })
                .zero()
            }),
            dead_letters,
            recovered: by_stream(counter_vec(
                &r,
                "tps_worker_recovered_total",
                "Messages a previous delivery still held (a dead owner's batch) settled first on takeover.",
                &["stream"],
            ))
            .zero(),
            lease_acquisitions: by_stream(counter_vec(
                &r,
                "tps_worker_lease_acquisitions_total",
                "Shard leases acquired.",
                &["stream"],
            ))
            .zero(),
            lease_losses: by_stream(counter_vec(
                &r,
                "tps_worker_lease_losses_total",
                "Shard leases lost (not renewed, fenced, Redis gone).",
                &["stream"],
            ))
            .zero(),
            shards_owned: Children::new(
                gauge_vec(&r, "tps_worker_shards_owned", "Shards this worker owns now.", &["stream"]),
                STREAMS,
            ),
            shard_owned: gauge_vec(
                &r,
                "tps_worker_shard_owned",
                "1 while this worker owns the shard, else 0.",
                &["stream", "shard"],
            ),
            registry: r,
        }
    }

    /// The registry `/metrics` renders.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// The child for `stream` and `value` of a two-label counter cached per stream in `cached`.
fn per_stream<'a, const N: usize>(
    vec: &IntCounterVec,
    cached: &'a [Children<IntCounter, N>; 2],
    stream: &str,
    value: &str,
) -> Cow<'a, IntCounter> {
    match STREAMS.iter().position(|known| *known == stream) {
        Some(i) => cached[i].get(value),
        None => Cow::Owned(vec.with_label_values(&[stream, value])),
    }
}

/// One committed batch of `size` messages took `took`.
pub fn batch_settled(stream: &'static str, size: usize, took: Duration) {
    let m = metrics();
    m.batch_size.get(stream).observe(size as f64);
    m.settle_seconds.get(stream).observe(took.as_secs_f64());
}

/// A combined settling transaction ([`crate::settling::combine`]) took the batches of `shards` shards.
pub fn transaction_shards(stream: &'static str, shards: usize) {
    metrics().transaction_shards.get(stream).observe(shards as f64);
}

/// A command accepted by the api at some time settled `lag` later: what a
/// buyer waits between the 202 and a final status (queueing included).
pub fn settle_lag(stream: &'static str, lag: Duration) {
    metrics().settle_lag.get(stream).observe(lag.as_secs_f64());
}

/// `n` commands settled with `outcome` (CONFIRMED, SOLD_OUT, …, DUPLICATE).
pub fn settled(stream: &'static str, outcome: &'static str, n: u64) {
    if n > 0 {
        let m = metrics();
        per_stream(&m.settled, &m.settled_by_outcome, stream, outcome).inc_by(n);
    }
}

/// A transaction failed transiently and will be retried.
pub fn transient_error(stream: &'static str) {
    metrics().transient_errors.get(stream).inc();
}

/// Messages a previous delivery still held (a dead owner's batch) were settled on takeover.
pub fn recovered(stream: &'static str, n: usize) {
    metrics().recovered.get(stream).inc_by(n as u64);
}

/// A message was dead-lettered; `kind` is `undecodable` or `max_deliveries`.
pub fn dead_lettered(stream: &str, kind: &'static str) {
    let m = metrics();
    per_stream(&m.dead_letters, &m.dead_letters_by_kind, stream, kind).inc();
}

/// A lease was acquired.
pub fn lease_acquired(stream: &'static str) {
    metrics().lease_acquisitions.get(stream).inc();
}

/// A lease was lost (not renewed, fenced, or Redis unreachable).
pub fn lease_lost(stream: &'static str) {
    metrics().lease_losses.get(stream).inc();
}

/// Whether this worker owns `shard` now (1 or 0); bounded by SHARDS, never an id.
pub fn shard_owned(stream: &'static str, shard: u32, owned: bool) {
    metrics().shard_owned.with_label_values(&[stream, &shard.to_string()]).set(i64::from(owned));
}

/// How many shards this worker owns now.
pub fn shards_owned(stream: &'static str, n: usize) {
    metrics().shards_owned.get(stream).set(i64::try_from(n).unwrap_or(i64::MAX));
}

#[cfg(test)]
mod tests {
    use tps_testkit::Scrape;
    use tps_testkit::metrics::documented;

    use super::*;

    #[test]
    fn the_catalogue_is_the_documented_one_with_its_types_and_help() {
        let m = WorkerMetrics::new();
        // A labelled series shows from its first event (unless registered at zero): one of each.
        m.batch_size.get(ORDERS_STREAM).observe(3.0);
        m.transaction_shards.get(ORDERS_STREAM).observe(2.0);
        m.settle_seconds.get(ORDERS_STREAM).observe(0.01);
        m.settle_lag.get(ORDERS_STREAM).observe(0.2);
        per_stream(&m.settled, &m.settled_by_outcome, ORDERS_STREAM, "CONFIRMED").inc();
        m.transient_errors.get(USERS_STREAM).inc();
        m.shards_owned.get(ORDERS_STREAM).set(2);
        m.shard_owned.with_label_values(&[ORDERS_STREAM, "0"]).set(1);
        let page = Scrape::parse(&tps_runtime::metrics::render(m.registry()).unwrap());
        let docs = documented(include_str!("../../docs/observability.md"), &["worker"]);
        assert_eq!(page.types, docs, "registered vs docs/observability.md");
        assert_eq!(page.help.keys().collect::<Vec<_>>(), docs.keys().collect::<Vec<_>>(), "help texts");
        let lag = [("stream", ORDERS_STREAM)];
        assert_eq!(page.sum("tps_worker_settle_lag_seconds_bucket", &[lag[0], ("le", "0.25")]), Some(1.0));
        assert_eq!(page.sum("tps_worker_settle_lag_seconds_bucket", &[lag[0], ("le", "0.1")]), Some(0.0));
    }

    #[test]
    fn the_counters_alerts_use_are_at_zero_for_both_streams_from_the_start() {
        let m = WorkerMetrics::new();
        let page = Scrape::parse(&tps_runtime::metrics::render(m.registry()).unwrap());
        for stream in STREAMS {
            for name in [
                "tps_worker_lease_acquisitions_total",
                "tps_worker_lease_losses_total",
                "tps_worker_recovered_total",
            ] {
                assert_eq!(page.sum(name, &[("stream", stream)]), Some(0.0), "{name} {stream}");
            }
            for kind in DEAD_LETTER_KINDS {
                let labels = [("stream", stream), ("kind", kind)];
                assert_eq!(page.sum("tps_worker_dead_letters_total", &labels), Some(0.0), "{labels:?}");
            }
        }
        assert_eq!(page.find("tps_worker_settled_total", &[]).count(), 0, "settles show from the first");
    }

    #[test]
    fn a_stream_or_outcome_not_cached_still_counts() {
        let m = WorkerMetrics::new();
        per_stream(&m.settled, &m.settled_by_outcome, "OTHER", "CONFIRMED").inc_by(2);
        per_stream(&m.settled, &m.settled_by_outcome, ORDERS_STREAM, "NEW_OUTCOME").inc();
        let page = Scrape::parse(&tps_runtime::metrics::render(m.registry()).unwrap());
        let settled = |stream, outcome| {
            page.sum("tps_worker_settled_total", &[("stream", stream), ("outcome", outcome)])
        };
        assert_eq!(settled("OTHER", "CONFIRMED"), Some(2.0));
        assert_eq!(settled(ORDERS_STREAM, "NEW_OUTCOME"), Some(1.0));
    }
}
