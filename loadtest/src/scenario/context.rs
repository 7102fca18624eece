//! What every scenario shares: the target, the plan, progress bars, phases
//! measured with the /proc sampler, and the final report.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::Common;
use crate::error::Result;
use crate::http::Target;
use crate::load::{self, PhaseRun, Plan, Workload};
use crate::nofile::loopback_sources;
use crate::procstat::{Sampler, Selector};
use crate::report::flow::Flow;
use crate::report::{PhaseReport, Ratio, Report, Settle};
use crate::schedule::Model;
use crate::verify::Verdict;
use crate::ws::WsReport;

/// A scenario's shared state.
pub struct Context {
    /// Where the load goes.
    pub target: Arc<Target>,
    /// The shared options.
    pub common: Common,
    /// Tag for names, keys and emails.
    pub run_id: String,
    /// When the run started.
    pub started_at: chrono::DateTime<chrono::Utc>,
}

impl Context {
    /// Resolves the target and picks a run id.
    pub fn new(common: Common) -> Result<Self> {
        let target = Arc::new(Target::parse(&common.base_url)?);
        let run_id = common
            .run_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..8].to_owned());
        Ok(Self { target, common, run_id, started_at: chrono::Utc::now() })
    }

    /// The plan for `requests` over `connections`, in the model the options ask for.
    /// `first_source` picks the 127.0.0.x range so that two phases with tens of
    /// thousands of connections never compete for the same ephemeral ports.
    pub fn plan(&self, requests: u64, connections: usize, first_source: u8) -> Plan {
        let model = self.common.rate.map_or(Model::Closed, |rate| Model::Open { rate });
        Plan {
            requests,
            connections,
            model,
            request_timeout: self.common.request_timeout,
            source_ips: self.sources(connections, first_source),
            connect_concurrency: self.common.connect_concurrency,
            gate: None,
        }
    }

    fn sources(&self, connections: usize, first: u8) -> Vec<IpAddr> {
        if !self.target.addr.ip().is_loopback() || !self.target.addr.is_ipv4() {
            return Vec::new();
        }
        let auto = loopback_sources(connections);
        let n = if self.common.source_ips == 0 {
            if connections > 25_000 { auto.len() } else { 0 }
        } else {
            self.common.source_ips
        };
        (0..n)
            .map(|i| IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, first.saturating_add(i as u8))))
            .collect()
    }

    /// Runs one phase with a progress bar and the /proc sampler.
    pub async fn measure<W: Workload>(
        &self,
        name: &str,
        plan: Plan,
        workload: Arc<W>,
        routes: &[&str],
    ) -> (PhaseRun<W::Note>, PhaseReport) {
        let bar = bar(plan.requests, name);
        let sampler = Sampler::start(self.selector(), Duration::from_millis(500));
        let run = load::run(self.target.clone(), plan, workload, bar.clone()).await;
        let processes = sampler.stop().await;
        bar.finish_and_clear();
        let report = PhaseReport::of(name, &run, routes, processes);
        (run, report)
    }

    /// Like [`Context::measure`], for a phase that `phase` runs elsewhere (in parts, see
    /// `crate::parts`): samples the servers meanwhile and reports what it returns.
    pub async fn measure_with(
        &self,
        name: &str,
        requests: u64,
        routes: &[&str],
        phase: impl Future<Output = Result<PhaseRun<u64>>>,
    ) -> Result<(PhaseRun<u64>, PhaseReport)> {
        let bar = bar(requests, name);
        bar.enable_steady_tick(Duration::from_millis(500));
        let sampler = Sampler::start(self.selector(), Duration::from_millis(500));
        let run = phase.await;
        let processes = sampler.stop().await;
        bar.finish_and_clear();
        let run = run?;
        let report = PhaseReport::of(name, &run, routes, processes);
        Ok((run, report))
    }

    fn selector(&self) -> Selector {
        Selector { pids: self.common.pids.clone(), names: self.common.process_names.clone() }
    }

    /// Assembles the report; it passes when every verdict holds.
    pub fn report(
        &self,
        scenario: &str,
        settings: serde_json::Value,
        phases: Vec<PhaseReport>,
        outcome: Outcome,
    ) -> Report {
        let ratio = match phases.as_slice() {
            [noop, main] => Some(Ratio::of(main, noop)),
            _ => None,
        };
        let passed = outcome.verdicts.iter().all(|v| v.ok);
        Report {
            scenario: scenario.to_owned(),
            base_url: self.target.base_url.clone(),
            started_at: self.started_at.to_rfc3339(),
            settings,
            phases,
            ratio,
            settle: outcome.settle,
            websocket: outcome.websocket,
            facts: outcome.facts,
            verdicts: outcome.verdicts,
            notes: outcome.notes,
            flow: outcome.flow,
            passed,
        }
    }
}

/// What a scenario's verification found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every check.
    pub verdicts: Vec<Verdict>,
    /// Settle times.
    pub settle: Option<Settle>,
    /// The WebSocket sample.
    pub websocket: Option<WsReport>,
    /// Scenario facts.
    pub facts: serde_json::Value,
    /// Notes.
    pub notes: Vec<String>,
    /// Orders through the system, second by second.
    pub flow: Option<Flow>,
}

/// A progress bar for `len` steps.
pub fn bar(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} eta {eta}",
        )
        .expect("valid template"),
    );
    bar.set_prefix(label.to_owned());
    bar
}

/// Seconds from `from` to `to` (negative when `to` came first).
pub fn secs_between(from: std::time::SystemTime, to: std::time::SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}
