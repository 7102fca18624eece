//! Prometheus metrics of the worker. Labels are small closed sets; never ids.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Installs the global recorder once per process and returns its handle.
/// In-process tests start several workers; they share it.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("tps_worker_settle_seconds".into()),
                    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("tps_worker_batch_size".into()),
                        &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("tps_worker_settle_lag_seconds".into()),
                        &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0],
                    )
                })
                .expect("bucket lists are not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding process); then ours stays empty.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

/// Help texts, and the counters an operator alerts on registered at zero, so
/// `/metrics` shows them (and `rate()` works) before the first event.
fn describe() {
    metrics::describe_histogram!("tps_worker_batch_size", "Commands per committed batch.");
    metrics::describe_histogram!(
        "tps_worker_settle_seconds",
        metrics::Unit::Seconds,
        "Time to settle one batch (pull excluded)."
    );
    metrics::describe_histogram!(
        "tps_worker_settle_lag_seconds",
        metrics::Unit::Seconds,
        "From the api's accept (202) to the commit that settled the command."
    );
    metrics::describe_counter!("tps_worker_settled_total", "Commands settled, by outcome.");
    metrics::describe_counter!(
        "tps_worker_transient_errors_total",
        "Batches rolled back by a transient error and retried."
    );
    metrics::describe_counter!(
        "tps_worker_dead_letters_total",
        "Commands moved to the dead-letter stream, by kind."
    );
    metrics::describe_counter!(
        "tps_worker_recovered_total",
        "Messages a previous delivery still held (a dead owner's batch) settled first on takeover."
    );
    metrics::describe_counter!("tps_worker_lease_acquisitions_total", "Shard leases acquired.");
    metrics::describe_counter!(
        "tps_worker_lease_losses_total",
        "Shard leases lost (not renewed, fenced, Redis gone)."
    );
    metrics::describe_gauge!("tps_worker_shards_owned", "Shards this worker owns now.");
    metrics::describe_gauge!("tps_worker_shard_owned", "1 while this worker owns the shard, else 0.");
    for stream in [tps_contract::subject::ORDERS_STREAM, tps_contract::subject::USERS_STREAM] {
        counter!("tps_worker_lease_acquisitions_total", "stream" => stream).absolute(0);
        counter!("tps_worker_lease_losses_total", "stream" => stream).absolute(0);
        counter!("tps_worker_recovered_total", "stream" => stream).absolute(0);
        for kind in ["undecodable", "max_deliveries"] {
            counter!("tps_worker_dead_letters_total", "stream" => stream, "kind" => kind).absolute(0);
        }
    }
}

/// One committed batch of `size` messages took `took`.
pub fn batch_settled(stream: &'static str, size: usize, took: Duration) {
    histogram!("tps_worker_batch_size", "stream" => stream).record(size as f64);
    histogram!("tps_worker_settle_seconds", "stream" => stream).record(took.as_secs_f64());
}

/// A command accepted by the api at some time settled `lag` later: what a
/// buyer waits between the 202 and a final status (queueing included).
pub fn settle_lag(stream: &'static str, lag: Duration) {
    histogram!("tps_worker_settle_lag_seconds", "stream" => stream).record(lag.as_secs_f64());
}

/// `n` commands settled with `outcome` (CONFIRMED, SOLD_OUT, …, DUPLICATE).
pub fn settled(stream: &'static str, outcome: &'static str, n: u64) {
    if n > 0 {
        counter!("tps_worker_settled_total", "stream" => stream, "outcome" => outcome).increment(n);
    }
}

/// A transaction failed transiently and will be retried.
pub fn transient_error(stream: &'static str) {
    counter!("tps_worker_transient_errors_total", "stream" => stream).increment(1);
}

/// Messages a previous delivery still held (a dead owner's batch) were settled on takeover.
pub fn recovered(stream: &'static str, n: usize) {
    counter!("tps_worker_recovered_total", "stream" => stream).increment(n as u64);
}

/// A message was dead-lettered; `kind` is `undecodable` or `max_deliveries`.
pub fn dead_lettered(stream: &str, kind: &'static str) {
    counter!("tps_worker_dead_letters_total", "stream" => stream.to_owned(), "kind" => kind).increment(1);
}

/// A lease was acquired.
pub fn lease_acquired(stream: &'static str) {
    counter!("tps_worker_lease_acquisitions_total", "stream" => stream).increment(1);
}

/// A lease was lost (not renewed, fenced, or Redis unreachable).
pub fn lease_lost(stream: &'static str) {
    counter!("tps_worker_lease_losses_total", "stream" => stream).increment(1);
}

/// Whether this worker owns `shard` now (1 or 0); bounded by SHARDS, never an id.
pub fn shard_owned(stream: &'static str, shard: u32, owned: bool) {
    gauge!("tps_worker_shard_owned", "stream" => stream, "shard" => shard.to_string()).set(if owned {
        1.0
    } else {
        0.0
    });
}

/// How many shards this worker owns now.
pub fn shards_owned(stream: &'static str, n: usize) {
    gauge!("tps_worker_shards_owned", "stream" => stream).set(n as f64);
}
