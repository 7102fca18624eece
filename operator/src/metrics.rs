//! The operator's Prometheus metrics, registered once per process on a registry of
//! its own (never the `prometheus` crate's global one) and served by [`crate::http`].

use std::sync::LazyLock;

use prometheus::{Histogram, IntCounter, IntCounterVec, Registry};
use tps_runtime::metrics::{counter, counter_vec, histogram};

/// Buckets make the duration a histogram (aggregatable over replicas), not a summary.
const RECONCILE_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The operator's metrics, made on first use; every reconcile of the process counts in them.
pub fn metrics() -> &'static OperatorMetrics {
    static METRICS: LazyLock<OperatorMetrics> = LazyLock::new(OperatorMetrics::new);
    &METRICS
}

/// Every metric of the operator, with its help text.
pub struct OperatorMetrics {
    registry: Registry,
    /// `tps_operator_reconciles_total`.
    pub reconciles: IntCounter,
    /// `tps_operator_reconcile_errors_total{error}`.
    pub reconcile_errors: IntCounterVec,
    /// `tps_operator_reconcile_duration_seconds`.
    pub reconcile_duration: Histogram,
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl OperatorMetrics {
    /// Registers the catalogue on a new registry.
    pub fn new() -> Self {
        let r = Registry::new();
        Self {
            reconciles: counter(&r, "tps_operator_reconciles_total", "Reconciles started."),
            reconcile_errors: counter_vec(
                &r,
                "tps_operator_reconcile_errors_total",
                "Reconciles failed, by error kind.",
                &["error"],
            ),
            reconcile_duration: histogram(
                &r,
                "tps_operator_reconcile_duration_seconds",
                "Time spent in one reconcile.",
                RECONCILE_BUCKETS,
            ),
            registry: r,
        }
    }

    /// The registry `/metrics` renders.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use tps_testkit::Scrape;
    use tps_testkit::metrics::documented;

    use super::*;

    #[test]
    fn the_catalogue_is_the_documented_one_with_its_types_and_help() {
        let m = OperatorMetrics::new();
        m.reconcile_errors.with_label_values(&["kube"]).inc();
        let page = Scrape::parse(&tps_runtime::metrics::render(m.registry()).unwrap());
        let docs = documented(include_str!("../../docs/observability.md"), &["operator"]);
        assert_eq!(page.types, docs, "registered vs docs/observability.md");
        assert_eq!(page.help.keys().collect::<Vec<_>>(), docs.keys().collect::<Vec<_>>(), "help texts");
        let buckets: Vec<String> =
            RECONCILE_BUCKETS.iter().map(f64::to_string).chain(["+Inf".into()]).collect();
        assert_eq!(page.buckets("tps_operator_reconcile_duration_seconds", &[]), buckets);
    }
}
