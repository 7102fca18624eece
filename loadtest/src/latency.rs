//! Latency samples and their arithmetic: HdrHistograms in microseconds,
//! percentiles in milliseconds, and the per-second timeline for the chart.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Status recorded when the request got no HTTP answer (reset, refused…).
pub const TRANSPORT_ERROR: u16 = 0;
/// Status recorded when no answer came within the request timeout.
pub const TIMED_OUT: u16 = 1;

/// One request as measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// When it was meant to go (open model) or went (closed model), µs after the phase start.
    pub at_us: u64,
    /// Latency in µs, from the intended send time in the open model.
    pub latency_us: u64,
    /// HTTP status, or [`TRANSPORT_ERROR`] / [`TIMED_OUT`].
    pub status: u16,
    /// The scenario's route tag.
    pub route: u8,
}

/// An empty histogram in µs with 3 significant figures that grows as needed.
pub fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant figures is valid")
}

/// Records every sample's latency (optionally only one route's).
pub fn histogram_of(samples: &[Sample], route: Option<u8>) -> Histogram<u64> {
    let mut h = histogram();
    for s in samples.iter().filter(|s| route.is_none_or(|r| s.route == r)) {
        h.record(s.latency_us.max(1)).expect("auto-resizing histogram accepts any value");
    }
    h
}

/// The usual percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Percentiles {
    /// How many values.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Percentiles {
    /// Reads a µs histogram.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// One second of the run, for the latency-over-time chart.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelinePoint {
    /// Seconds after the phase start.
    pub second: u32,
    /// Requests (intended to be) sent in that second.
    pub count: u64,
    /// Median latency.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// Buckets samples by the second they were (meant to be) sent in.
pub fn timeline(samples: &[Sample]) -> Vec<TimelinePoint> {
    let seconds = samples.iter().map(|s| s.at_us / 1_000_000).max().map_or(0, |m| m as usize + 1);
    let mut buckets: Vec<Histogram<u64>> = (0..seconds).map(|_| histogram()).collect();
    for s in samples {
        buckets[(s.at_us / 1_000_000) as usize].record(s.latency_us.max(1)).expect("auto-resizing");
    }
    buckets
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.is_empty())
        .map(|(i, h)| {
            let p = Percentiles::of(h);
            TimelinePoint {
                second: i as u32,
                count: h.len(),
                p50_ms: p.p50_ms,
                p99_ms: p.p99_ms,
                max_ms: p.max_ms,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64, latency_ms: u64) -> Sample {
        Sample { at_us: at_ms * 1000, latency_us: latency_ms * 1000, status: 200, route: 0 }
    }

    #[test]
    fn percentiles_of_a_uniform_ramp_are_exact_to_three_figures() {
        // 1 ms, 2 ms, … 10,000 ms: the q-quantile is q × 10 s.
        let samples: Vec<Sample> = (1..=10_000).map(|i| sample(0, i)).collect();
        let p = Percentiles::of(&histogram_of(&samples, None));
        assert_eq!(p.count, 10_000);
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(close(p.p50_ms, 5_000.0), "p50 {}", p.p50_ms);
        assert!(close(p.p90_ms, 9_000.0), "p90 {}", p.p90_ms);
        assert!(close(p.p99_ms, 9_900.0), "p99 {}", p.p99_ms);
        assert!(close(p.p999_ms, 9_990.0), "p99.9 {}", p.p999_ms);
        assert!(close(p.max_ms, 10_000.0), "max {}", p.max_ms);
        assert!(close(p.mean_ms, 5_000.5), "mean {}", p.mean_ms);
    }

    #[test]
    fn a_rare_slow_request_shows_only_above_its_percentile() {
        // 999 fast (1 ms) and one slow (2 s): p99 stays fast, p99.9 and max see it.
        let mut samples: Vec<Sample> = (0..999).map(|_| sample(0, 1)).collect();
        samples.push(sample(0, 2_000));
        let p = Percentiles::of(&histogram_of(&samples, None));
        assert!(p.p99_ms < 1.01, "p99 {}", p.p99_ms);
        assert!(p.p999_ms < 1.01, "p99.9 is the 999th value: {}", p.p999_ms);
        assert!((p.max_ms - 2_000.0).abs() < 2.0, "max {}", p.max_ms);
    }

    #[test]
    fn route_filter_and_empty_histograms() {
        let mut samples = vec![sample(0, 5), sample(0, 5)];
        samples[1].route = 1;
        samples[1].latency_us = 50_000;
        assert_eq!(Percentiles::of(&histogram_of(&samples, Some(1))).count, 1);
        assert!((Percentiles::of(&histogram_of(&samples, Some(1))).p50_ms - 50.0).abs() < 0.1);
        assert_eq!(Percentiles::of(&histogram_of(&[], None)), Percentiles::default());
    }

    #[test]
    fn timeline_buckets_by_send_second() {
        let samples = vec![sample(100, 1), sample(900, 3), sample(2_500, 10)];
        let t = timeline(&samples);
        assert_eq!(t.len(), 2, "the empty second 1 is skipped");
        assert_eq!((t[0].second, t[0].count), (0, 2));
        assert!((t[0].max_ms - 3.0).abs() < 0.01);
        assert_eq!((t[1].second, t[1].count), (2, 1));
    }
}
