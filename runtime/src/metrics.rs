//! Prometheus metrics as each binary's `/metrics` serves them, with the `prometheus`
//! crate: registering on the binary's own [`Registry`] (never the crate's global
//! default one), the text exposition, and the cached children of one-label vectors.
//!
//! The registering functions panic on an invalid or twice-registered name: both are
//! mistakes in a metric catalogue, found by the first test that builds it.

use std::borrow::Cow;
use std::sync::OnceLock;

use prometheus::core::{Metric, MetricVec, MetricVecBuilder};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The `Content-Type` of [`render`]'s text: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Every metric of `registry` in the text format, as `/metrics` answers.
pub fn render(registry: &Registry) -> prometheus::Result<String> {
    TextEncoder::new().encode_to_string(&registry.gather())
}

/// A counter without labels, registered on `registry` (shown from the start, at zero).
pub fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    prometheus::register_int_counter_with_registry!(name, help, registry).unwrap_or_else(|e| invalid(name, e))
}

/// A counter with `labels`; a series shows from the first use of its label values.
pub fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    prometheus::register_int_counter_vec_with_registry!(name, help, labels, registry)
        .unwrap_or_else(|e| invalid(name, e))
}

/// A gauge without labels, registered on `registry` (shown from the start, at zero).
pub fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    prometheus::register_int_gauge_with_registry!(name, help, registry).unwrap_or_else(|e| invalid(name, e))
}

/// A gauge with `labels`; a series shows from the first use of its label values.
pub fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    prometheus::register_int_gauge_vec_with_registry!(name, help, labels, registry)
        .unwrap_or_else(|e| invalid(name, e))
}

/// A histogram without labels with these bucket upper bounds (`+Inf` is implied).
pub fn histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    prometheus::register_histogram_with_registry!(name, help, buckets.to_vec(), registry)
        .unwrap_or_else(|e| invalid(name, e))
}

/// A histogram with `labels` and these bucket upper bounds (`+Inf` is implied).
pub fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    prometheus::register_histogram_vec_with_registry!(opts, labels, registry)
        .unwrap_or_else(|e| invalid(name, e))
}

/// A gauge without labels that is not registered yet: [`expose`] it when it applies.
pub fn unregistered_gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::with_opts(Opts::new(name, help)).unwrap_or_else(|e| invalid(name, e))
}

/// Registers `gauge` on `registry` unless it already is (from [`unregistered_gauge`]).
pub fn expose(registry: &Registry, gauge: &IntGauge) {
    match registry.register(Box::new(gauge.clone())) {
        Ok(()) | Err(prometheus::Error::AlreadyReg) => {}
        Err(e) => invalid("an unregistered gauge", e),
    }
}

fn invalid(name: &str, e: prometheus::Error) -> ! {
    panic!("metric {name}: {e}")
}

/// The children of a one-label vector for the label values known when the code was
/// written. Each is made on its first use (so its series shows with its first event,
/// unless [`Children::zero`] made it earlier) and then reached without hashing labels
/// or taking the vector's lock; any other value falls back to the vector's lookup.
pub struct Children<M, const N: usize> {
    lookup: Box<dyn Fn(&str) -> M + Send + Sync>,
    values: [&'static str; N],
    made: [OnceLock<M>; N],
}

impl<M: Metric, const N: usize> Children<M, N> {
    /// Over `vec`, which must have exactly one label.
    pub fn new<T>(vec: MetricVec<T>, values: [&'static str; N]) -> Self
    where
        T: MetricVecBuilder<M = M> + 'static,
    {
        Self::from_fn(values, move |value| vec.with_label_values(&[value]))
    }

    /// Over the children `lookup` finds by one label value (the other labels of a
    /// vector fixed in the closure).
    pub fn from_fn(values: [&'static str; N], lookup: impl Fn(&str) -> M + Send + Sync + 'static) -> Self {
        Self { lookup: Box::new(lookup), values, made: std::array::from_fn(|_| OnceLock::new()) }
    }

    /// Makes every known child now, so that each series shows (at zero) before its first event.
    pub fn zero(self) -> Self {
        for value in self.values {
            self.get(value);
        }
        self
    }

    /// The child for `value`.
    pub fn get(&self, value: &str) -> Cow<'_, M> {
        match self.values.iter().position(|known| *known == value) {
            Some(i) => Cow::Borrowed(self.made[i].get_or_init(|| (self.lookup)(value))),
            None => Cow::Owned((self.lookup)(value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms_with_help_type_and_buckets() {
        let registry = Registry::new();
        counter(&registry, "x_total", "Things.").inc_by(3);
        gauge_vec(&registry, "g", "A gauge.", &["shard"]).with_label_values(&["1"]).set(7);
        let h = histogram_vec(&registry, "d_seconds", "Durations.", &["stream"], &[0.5, 1.0]);
        h.with_label_values(&["orders"]).observe(0.7);
        let text = render(&registry).unwrap();
        for line in [
            "# HELP x_total Things.",
            "# TYPE x_total counter",
            "x_total 3",
            "# TYPE g gauge",
            "g{shard=\"1\"} 7",
            "# TYPE d_seconds histogram",
            "d_seconds_bucket{stream=\"orders\",le=\"0.5\"} 0",
            "d_seconds_bucket{stream=\"orders\",le=\"1\"} 1",
            "d_seconds_bucket{stream=\"orders\",le=\"+Inf\"} 1",
            "d_seconds_sum{stream=\"orders\"} 0.7",
            "d_seconds_count{stream=\"orders\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
        }
        assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4");
    }

    #[test]
    fn children_show_from_their_first_use_or_from_zero() {
        let registry = Registry::new();
        let lazy = Children::new(counter_vec(&registry, "a_total", "A.", &["why"]), ["one", "two"]);
        let zeroed = Children::new(counter_vec(&registry, "b_total", "B.", &["why"]), ["one", "two"]).zero();
        lazy.get("one").inc();
        lazy.get("other").inc_by(2);
        zeroed.get("two").inc();
        let text = render(&registry).unwrap();
        assert!(text.contains("a_total{why=\"one\"} 1\n"), "{text}");
        assert!(text.contains("a_total{why=\"other\"} 2\n"), "{text}");
        assert!(!text.contains("a_total{why=\"two\"}"), "{text}");
        assert!(text.contains("b_total{why=\"one\"} 0\n"), "{text}");
        assert!(text.contains("b_total{why=\"two\"} 1\n"), "{text}");
    }

    #[test]
    fn an_unregistered_gauge_shows_once_exposed_and_exposing_twice_is_harmless() {
        let registry = Registry::new();
        let lag = unregistered_gauge("lag", "Lag.");
        lag.set(5);
        assert!(!render(&registry).unwrap().contains("lag"));
        expose(&registry, &lag);
        expose(&registry, &lag);
        assert!(render(&registry).unwrap().contains("lag 5\n"));
    }

    #[test]
    #[should_panic(expected = "metric x_total")]
    fn a_name_registered_twice_is_a_mistake() {
        let registry = Registry::new();
        counter(&registry, "x_total", "X.");
        counter(&registry, "x_total", "X.");
    }
}
