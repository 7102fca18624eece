//! The no-op baseline: `GET /healthz` with the scenario's own plan, so the
//! ratio compares the scenario with what the server does for nothing.

use crate::http::{Answer, Call};
use crate::load::{Plan, Workload};
use crate::report::PhaseReport;
use crate::scenario::context::Context;

/// `GET /healthz`, every time.
pub struct Noop;

impl Workload for Noop {
    type Note = ();

    fn call(&self, _i: u64) -> Call {
        Call::get("/healthz")
    }

    fn note(&self, _i: u64, _answer: &Answer) -> Option<()> {
        None
    }
}

/// Measures the baseline with `plan`, unless `--no-baseline`.
pub async fn baseline(ctx: &Context, plan: Plan) -> Option<PhaseReport> {
    if ctx.common.no_baseline {
        return None;
    }
    let (_, report) = ctx.measure("noop", plan, std::sync::Arc::new(Noop), &["noop"]).await;
    Some(report)
}
