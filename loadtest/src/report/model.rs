//! The report's data, serialised as the `--report` JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::latency::{
    Percentiles, Sample, TIMED_OUT, TRANSPORT_ERROR, TimelinePoint, histogram_of, timeline,
};
use crate::load::PhaseRun;
use crate::procstat::Usage;
use crate::report::flow::Flow;
use crate::verify::Verdict;
use crate::ws::WsReport;

/// One phase (the no-op baseline or the scenario itself).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseReport {
    /// `noop` or the scenario name.
    pub name: String,
    /// Requests sent.
    pub requests: u64,
    /// Answers by status (`error` for no answer, `timeout` for none in time).
    pub by_status: BTreeMap<String, u64>,
    /// Workers whose connection could not be opened before the start.
    pub connect_failures: u64,
    /// From the start to the last answer.
    pub duration_s: f64,
    /// HTTP answers per second, any status.
    pub answered_per_s: f64,
    /// Good answers per second: 2xx, plus 409 (a sold-out answer is a correct answer).
    pub good_per_s: f64,
    /// Latency of every request (from the intended time in the open model).
    pub latency: Percentiles,
    /// Latency per route, when the scenario mixes routes.
    pub routes: BTreeMap<String, Percentiles>,
    /// Latency per second of the run.
    pub timeline: Vec<TimelinePoint>,
    /// Answers by status in each second of the run, by when they came back (index = second).
    pub answers: Vec<BTreeMap<String, u64>>,
    /// CPU and memory of the sampled processes during the phase.
    pub processes: Vec<Usage>,
}

impl PhaseReport {
    /// Summarises a phase; `routes` names the route tags of the workload.
    pub fn of<N>(name: &str, run: &PhaseRun<N>, routes: &[&str], processes: Vec<Usage>) -> Self {
        let mut by_status = BTreeMap::new();
        let (mut answered, mut good) = (0u64, 0u64);
        for s in &run.samples {
            *by_status.entry(status_label(s.status)).or_insert(0) += 1;
            if s.status >= 100 {
                answered += 1;
            }
            if (200..300).contains(&s.status) || s.status == 409 {
                good += 1;
            }
        }
        let secs = run.elapsed.as_secs_f64().max(1e-6);
        let per_route = if routes.len() > 1 {
            routes
                .iter()
                .enumerate()
                .map(|(i, r)| (r.to_string(), Percentiles::of(&histogram_of(&run.samples, Some(i as u8)))))
                .collect()
        } else {
            BTreeMap::new()
        };
        Self {
            name: name.to_owned(),
            requests: run.samples.len() as u64,
            by_status,
            connect_failures: run.connect_failures,
            duration_s: secs,
            answered_per_s: answered as f64 / secs,
            good_per_s: good as f64 / secs,
            latency: Percentiles::of(&histogram_of(&run.samples, None)),
            routes: per_route,
            timeline: timeline(&run.samples),
            answers: answers_per_second(&run.samples),
            processes,
        }
    }

    /// Answers with this status.
    pub fn count(&self, status: u16) -> u64 {
        self.by_status.get(&status_label(status)).copied().unwrap_or(0)
    }
}

/// Answers by status in each second, by when they came back (sent plus latency).
pub fn answers_per_second(samples: &[Sample]) -> Vec<BTreeMap<String, u64>> {
    let second = |s: &Sample| ((s.at_us + s.latency_us) / 1_000_000) as usize;
    let mut out = vec![BTreeMap::new(); samples.iter().map(second).max().map_or(0, |m| m + 1)];
    for s in samples {
        *out[second(s)].entry(status_label(s.status)).or_insert(0) += 1;
    }
    out
}

fn status_label(status: u16) -> String {
    match status {
        TRANSPORT_ERROR => "error".to_owned(),
        TIMED_OUT => "timeout".to_owned(),
        s => s.to_string(),
    }
}

/// The scenario against the no-op route, measured in the same run with the same settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ratio {
    /// Scenario good answers per second ÷ no-op good answers per second (1.0 = as fast as doing nothing).
    pub throughput: f64,
    /// Scenario p99 ÷ no-op p99.
    pub p99: f64,
}

impl Ratio {
    /// Compares `scenario` to `noop`.
    pub fn of(scenario: &PhaseReport, noop: &PhaseReport) -> Self {
        let div = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        Self {
            throughput: div(scenario.good_per_s, noop.good_per_s),
            p99: div(scenario.latency.p99_ms, noop.latency.p99_ms),
        }
    }
}

/// How long the system took to settle what it accepted.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settle {
    /// From the last request sent until the last accepted item was final.
    pub after_last_request_s: Option<f64>,
    /// From the scenario's start until the last accepted item was final.
    pub after_start_s: Option<f64>,
    /// `processedAt` (the commit time the server reports) or `observed` (when polling saw it).
    pub method: String,
    /// Polling rounds through the API.
    pub poll_rounds: u32,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Where the load went.
    pub base_url: String,
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// The settings, as given on the command line.
    pub settings: serde_json::Value,
    /// The no-op baseline (when measured) and the scenario.
    pub phases: Vec<PhaseReport>,
    /// Scenario ÷ no-op.
    pub ratio: Option<Ratio>,
    /// Settle times.
    pub settle: Option<Settle>,
    /// Commit-to-client delay of pushed order updates.
    pub websocket: Option<WsReport>,
    /// Scenario-specific facts (stock, sold, …).
    pub facts: serde_json::Value,
    /// Every consistency check.
    pub verdicts: Vec<Verdict>,
    /// Things worth knowing that are not verdicts.
    pub notes: Vec<String>,
    /// Orders through the system, second by second (order scenarios).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<Flow>,
    /// Whether every verdict held.
    pub passed: bool,
}

impl Report {
    /// The scenario phase (the last one).
    pub fn main_phase(&self) -> Option<&PhaseReport> {
        self.phases.last()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn run(statuses: &[(u16, u64)], secs: u64) -> PhaseRun<()> {
        let samples = statuses
            .iter()
            .flat_map(|(s, n)| {
                (0..*n).map(move |i| Sample { at_us: i, latency_us: 1000, status: *s, route: 0 })
            })
            .collect();
        PhaseRun {
            samples,
            notes: vec![],
            unanswered: vec![],
            connect_failures: 0,
            started_wall: SystemTime::now(),
            last_sent_after: Duration::ZERO,
            elapsed: Duration::from_secs(secs),
        }
    }

    #[test]
    fn throughput_counts_409_as_good_and_errors_as_unanswered() {
        let p = PhaseReport::of(
            "flash-sale",
            &run(&[(202, 50), (409, 150), (503, 100), (TRANSPORT_ERROR, 100)], 2),
            &["orders"],
            vec![],
        );
        assert_eq!(p.requests, 400);
        assert_eq!((p.count(202), p.count(409), p.count(503), p.by_status["error"]), (50, 150, 100, 100));
        assert_eq!(p.answered_per_s, 150.0);
        assert_eq!(p.good_per_s, 100.0);
    }

    #[test]
    fn answers_are_counted_in_the_second_they_came_back() {
        let s = |at_ms: u64, latency_ms: u64, status| Sample {
            at_us: at_ms * 1000,
            latency_us: latency_ms * 1000,
            status,
            route: 0,
        };
        let per =
            answers_per_second(&[s(100, 50, 202), s(900, 200, 202), s(950, 10, 409), s(0, 2_500, TIMED_OUT)]);
        assert_eq!(per.len(), 3);
        assert_eq!(per[0], BTreeMap::from([("202".to_owned(), 1), ("409".to_owned(), 1)]));
        assert_eq!(per[1], BTreeMap::from([("202".to_owned(), 1)]));
        assert_eq!(per[2], BTreeMap::from([("timeout".to_owned(), 1)]));
    }

    #[test]
    fn ratio_divides_scenario_by_noop() {
        let noop = PhaseReport::of("noop", &run(&[(200, 1000)], 1), &["noop"], vec![]);
        let main = PhaseReport::of("flash-sale", &run(&[(202, 800)], 1), &["orders"], vec![]);
        let r = Ratio::of(&main, &noop);
        assert!((r.throughput - 0.8).abs() < 1e-9);
        assert!((r.p99 - 1.0).abs() < 1e-9);
    }
}
