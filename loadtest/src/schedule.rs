//! When each request is meant to leave, and from when its latency counts.
//!
//! The closed model keeps a fixed number of connections busy: a request leaves
//! when its connection is free, and latency runs from the actual send. The open
//! model sends at a constant arrival rate whatever the server does: request `i`
//! is *intended* for `start + i / rate`, and its latency runs from that intended
//! time. A stalled server therefore makes every request that should have left
//! during the stall look slow, as its users would see it, instead of quietly
//! delaying the sends (coordinated omission).

use std::time::Duration;

use tokio::time::Instant;

/// How load is offered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    /// A fixed number of connections, each sending as soon as its last answer came.
    Closed,
    /// A constant arrival rate, in requests per second.
    Open {
        /// Requests per second.
        rate: f64,
    },
}

/// The send times of one phase.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    model: Model,
}

impl Schedule {
    /// A schedule starting at `start`.
    pub fn new(start: Instant, model: Model) -> Self {
        Self { start, model }
    }

    /// The phase start.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// When request `i` is meant to leave: `start + i / rate` in the open model,
    /// none in the closed model (it leaves when its connection is free).
    pub fn intended(&self, i: u64) -> Option<Instant> {
        match self.model {
            Model::Closed => None,
            Model::Open { rate } => Some(self.start + Duration::from_secs_f64(i as f64 / rate)),
        }
    }

    /// The latency of request `i` sent at `sent` and answered at `done`: from the
    /// intended time when there is one, so queueing behind a stall is counted.
    pub fn latency(&self, i: u64, sent: Instant, done: Instant) -> Duration {
        done.saturating_duration_since(self.intended(i).unwrap_or(sent))
    }

    /// Where the request sits on the timeline: its intended send time, else its actual one.
    pub fn offset(&self, i: u64, sent: Instant) -> Duration {
        self.intended(i).unwrap_or(sent).saturating_duration_since(self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::{Percentiles, Sample, histogram_of};

    #[test]
    fn open_model_spaces_requests_by_the_rate() {
        let start = Instant::now();
        let s = Schedule::new(start, Model::Open { rate: 1000.0 });
        assert_eq!(s.intended(0), Some(start));
        assert_eq!(s.intended(1500).unwrap() - start, Duration::from_millis(1500));
        assert_eq!(Schedule::new(start, Model::Closed).intended(7), None);
    }

    /// One connection, 1,000 requests/s for 2 s, each served in 100 µs, except that
    /// request 500 stalls the server for one second. Measured from the actual send
    /// (what a naive runner does), the stall is a single slow request and p99 looks
    /// perfect; measured from the intended time, the ~1,000 requests that queued
    /// behind it are slow too, which is what users would have seen.
    #[test]
    fn open_model_counts_the_queue_behind_a_stall() {
        let start = Instant::now();
        let schedule = Schedule::new(start, Model::Open { rate: 1000.0 });
        let (mut corrected, mut naive) = (Vec::new(), Vec::new());
        let mut free_at = start;
        for i in 0..2000u64 {
            let sent = schedule.intended(i).unwrap().max(free_at);
            let service = if i == 500 { Duration::from_secs(1) } else { Duration::from_micros(100) };
            let done = sent + service;
            free_at = done;
            let at_us = schedule.offset(i, sent).as_micros() as u64;
            let sample = |latency: Duration| Sample {
                at_us,
                latency_us: latency.as_micros() as u64,
                status: 202,
                route: 0,
            };
            corrected.push(sample(schedule.latency(i, sent, done)));
            naive.push(sample(done - sent));
        }
        let naive = Percentiles::of(&histogram_of(&naive, None));
        let corrected = Percentiles::of(&histogram_of(&corrected, None));
        assert!(naive.p99_ms < 0.2, "naive p99 hides the stall: {}", naive.p99_ms);
        assert!(corrected.p90_ms > 500.0, "the queue behind the stall is slow: p90 {}", corrected.p90_ms);
        assert!(corrected.p99_ms > 900.0, "corrected p99 shows it: {}", corrected.p99_ms);
        assert!((corrected.max_ms - 1000.1).abs() < 2.0, "max is the stall itself: {}", corrected.max_ms);
    }

    #[test]
    fn closed_model_measures_from_the_actual_send() {
        let start = Instant::now();
        let s = Schedule::new(start, Model::Closed);
        let sent = start + Duration::from_secs(3);
        assert_eq!(s.latency(9, sent, sent + Duration::from_millis(4)), Duration::from_millis(4));
        assert_eq!(s.offset(9, sent), Duration::from_secs(3));
    }
}
