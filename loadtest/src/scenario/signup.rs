//! `signup-burst` and `signup-sustained`: sign-ups with the nested body of the
//! contract, every accepted one polled until CREATED or REJECTED.
//!
//! The burst opens one connection per sign-up before the clock starts (spread
//! over 127.0.0.x on loopback, the open-file limit raised to fit) and sends
//! them all at once. The sustained run is the usual closed or open model.
//! With `--duplicate-share`, that share of sign-ups reuse an earlier email in
//! another letter case: at most one of each email may be CREATED.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tps_contract::command::{LogAction, LogEntry, Project, Signup, Team};
use uuid::Uuid;

use crate::cli::SignupArgs;
use crate::error::Result;
use crate::http::{Answer, Call};
use crate::load::Workload;
use crate::parts::{self, Part, PartRun};
use crate::report::{Report, Settle};
use crate::scenario::context::{Context, Outcome, bar, secs_between};
use crate::scenario::{noop, setup};
use crate::schedule::Model;
use crate::verify::poll::{Pollee, settle};
use crate::verify::user_tally;
use crate::verify::{Source, UserTally, Verdict, user_verdicts};

/// Burst or sustained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One connection per sign-up, all sent at once.
    Burst,
    /// As many as the connections sustain, or `--rate`.
    Sustained,
}

/// The sign-ups of a run.
pub struct Signups {
    run_id: String,
    duplicate_share: f64,
}

impl Signups {
    /// The id of sign-up `i` (deterministic per run).
    pub fn id(&self, i: u64) -> Uuid {
        Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("lt-{}-{i}", self.run_id).as_bytes())
    }

    /// Which sign-up's email `i` uses: its own, or an earlier one's when it is a duplicate.
    pub fn email_of(&self, i: u64) -> u64 {
        let spread = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        let is_dup = i > 0 && (spread % 10_000) < (self.duplicate_share * 10_000.0) as u64;
        if is_dup { i / 2 } else { i }
    }

    /// The body of sign-up `i`.
    pub fn body(&self, i: u64) -> Signup {
        let e = self.email_of(i);
        // A duplicate differs only in letter case: email is unique case-insensitively.
        let email = if e == i {
            format!("lt-{}-{e}@example.test", self.run_id)
        } else {
            format!("LT-{}-{e}@Example.TEST", self.run_id)
        };
        Signup {
            id: self.id(i),
            name: format!("Load Test {i}"),
            email: Some(email),
            age: 18 + (i % 60) as u32,
            score: (i % 1000) as f64 / 10.0,
            active: i.is_multiple_of(2),
            country: "DE".to_owned(),
            team: Team {
                name: format!("team-{}", i % 100),
                leader: i.is_multiple_of(10),
                projects: vec![
                    Project { name: "alpha".into(), completed: true },
                    Project { name: "beta".into(), completed: false },
                ],
            },
            logs: vec![
                LogEntry { date: "2025-01-01T09:00:00Z".into(), action: LogAction::Login },
                LogEntry { date: "2025-01-01T17:00:00Z".into(), action: LogAction::Logout },
            ],
        }
    }
}

impl Workload for Signups {
    type Note = u64;

    fn call(&self, i: u64) -> Call {
        let body = serde_json::to_vec(&self.body(i)).expect("a sign-up serialises");
        Call::post("/v1/users", Bytes::from(body))
    }

    fn note(&self, i: u64, answer: &Answer) -> Option<u64> {
        (answer.status == 202).then_some(i)
    }
}

/// Runs the sign-ups and verifies them.
pub async fn run(args: SignupArgs, mode: Mode) -> Result<Report> {
    let ctx = Context::new(args.common.clone())?;
    let name = match mode {
        Mode::Burst => "signup-burst",
        Mode::Sustained => "signup-sustained",
    };
    let requests = args.requests.unwrap_or(if mode == Mode::Burst { 100_000 } else { 1_000_000 });
    let connections = if mode == Mode::Burst { requests as usize } else { ctx.common.connections };
    let workload = Arc::new(Signups {
        run_id: ctx.run_id.clone(),
        duplicate_share: args.duplicate_share.clamp(0.0, 1.0),
    });
    if let Some(part) = args.part {
        return run_part(&ctx, workload, requests, part).await;
    }
    let limit = crate::nofile::raise_nofile(connections as u64 + 4096)?;
    let mut notes = Vec::new();
    // More connections than this process may hold: a burst runs as parts, one process each.
    let parts = if mode == Mode::Burst {
        parts::needed(connections as u64, limit, args.connections_per_process)
    } else {
        1
    };
    if parts == 1 && limit < connections as u64 + 64 {
        notes.push(format!("open-file limit is {limit}, below the {connections} connections asked for"));
    }
    let (mut main_plan, mut noop_plan) =
        (ctx.plan(requests, connections, 11), ctx.plan(requests, connections, 101));
    if mode == Mode::Burst {
        (main_plan.model, noop_plan.model) = (Model::Closed, Model::Closed);
    }
    let (baseline, (run, main)) = if parts > 1 {
        notes.push(format!(
            "{connections} connections over {parts} processes (open-file limit {limit} each), \
             from 127.0.0.11 up; no no-op baseline"
        ));
        let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
        let measured = ctx
            .measure_with(
                name,
                requests,
                &["signups"],
                parts::run_children(&args, parts, &ctx.run_id, ctx.common.request_timeout),
            )
            .await?;
        (None, measured)
    } else {
        let baseline = noop::baseline(&ctx, noop_plan).await;
        (baseline, ctx.measure(name, main_plan, workload.clone(), &["signups"]).await)
    };
    let mut outcome = verify(&ctx, &workload, &run).await;
    outcome.notes.extend(notes);
    let phases = baseline.into_iter().chain([main]).collect();
    Ok(ctx.report(name, serde_json::to_value(&args)?, phases, outcome))
}

/// One part of a burst spread over processes: its share of the connections, started with the
/// others, its measurements printed for the parent; then the process ends (the parent
/// verifies and reports the whole run).
async fn run_part(ctx: &Context, workload: Arc<Signups>, requests: u64, part: Part) -> Result<Report> {
    let share = part.requests(requests);
    crate::nofile::raise_nofile(share + 4096)?;
    let mut plan = ctx.plan(share, share as usize, 11);
    plan.model = Model::Closed;
    let loopback_v4 = ctx.target.addr.ip().is_loopback() && ctx.target.addr.is_ipv4();
    plan.source_ips = part.sources(share, loopback_v4);
    plan.gate = Some(parts::stdin_gate());
    let strided = Arc::new(parts::Strided::new(workload, part));
    let run = crate::load::run(ctx.target.clone(), plan, strided, indicatif::ProgressBar::hidden()).await;
    PartRun::of(run, part).emit().await?;
    std::process::exit(0)
}

async fn verify(ctx: &Context, signups: &Signups, run: &crate::load::PhaseRun<u64>) -> Outcome {
    let mut outcome = Outcome::default();
    let admin = setup::admin(&ctx.common.jwt_secret, &ctx.run_id);
    let accepted: Vec<u64> = run.notes.clone();
    let pollees = accepted
        .iter()
        .map(|i| Pollee { path: format!("/v1/users/{}", signups.id(*i)), auth: Some(admin.clone()) })
        .collect();
    let bar = bar(accepted.len() as u64, "settling");
    let polled =
        settle(&ctx.target, pollees, ctx.common.connections.min(256), ctx.common.settle_timeout, &bar).await;
    bar.finish_and_clear();
    let mut created_per_email: HashMap<u64, u64> = HashMap::new();
    let mut by_outcome: HashMap<String, u64> = HashMap::new();
    let mut created_ids = Vec::new();
    for (k, o) in &polled.finals {
        let i = accepted[*k];
        let label = match &o.reason {
            Some(r) => format!("{}:{r}", o.status),
            None => o.status.clone(),
        };
        *by_outcome.entry(label).or_default() += 1;
        if o.status == "CREATED" {
            *created_per_email.entry(signups.email_of(i)).or_default() += 1;
            created_ids.push(signups.id(i));
        }
    }
    let api = UserTally {
        source: Source::Api,
        accepted: accepted.len() as u64,
        not_settled: Some(polled.pending.len() as u64),
        lost: polled.missing.len() as u64,
        duplicates: created_per_email.values().map(|n| n.saturating_sub(1)).sum(),
    };
    outcome.verdicts.extend(user_verdicts(&api));
    outcome.settle = Some(Settle {
        after_last_request_s: polled.all_final_at.map(|t| secs_between(run.last_sent_wall(), t).max(0.0)),
        after_start_s: polled.all_final_at.map(|t| secs_between(run.started_wall, t)),
        method: "observed".to_owned(),
        poll_rounds: polled.rounds,
    });
    outcome.facts = serde_json::json!({ "accepted": accepted.len(), "outcomes": by_outcome, "unanswered": run.unanswered.len() });
    if let Some(url) = &ctx.common.database_url {
        let ids: Vec<Uuid> = accepted.iter().map(|i| signups.id(*i)).collect();
        let read = match tps_runtime::db::connect(url, 2).await {
            Ok(pool) => user_tally(&pool, &ids, &created_ids).await,
            Err(e) => Err(e),
        };
        match read {
            Ok(Ok(tally)) => outcome.verdicts.extend(user_verdicts(&tally)),
            Ok(Err(note)) => outcome.notes.push(note),
            Err(e) => outcome.verdicts.push(Verdict {
                check: "postgres",
                source: Source::Postgres,
                ok: false,
                detail: e.to_string(),
            }),
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_reuse_an_earlier_email_in_another_case() {
        let s = Signups { run_id: "r".into(), duplicate_share: 0.1 };
        let dups: Vec<u64> = (0..10_000).filter(|i| s.email_of(*i) != *i).collect();
        assert!((800..1200).contains(&dups.len()), "about 10%: {}", dups.len());
        let i = dups[0];
        assert!(s.email_of(i) < i);
        let (a, b) = (s.body(i).email.unwrap(), s.body(s.email_of(i)).email.unwrap());
        assert_ne!(a, b);
        assert_eq!(a.to_lowercase(), b.to_lowercase());
        let none = Signups { run_id: "r".into(), duplicate_share: 0.0 };
        assert!((0..10_000).all(|i| none.email_of(i) == i));
    }

    #[test]
    fn bodies_match_the_contract_shape() {
        let s = Signups { run_id: "r".into(), duplicate_share: 0.0 };
        let v = serde_json::to_value(s.body(3)).unwrap();
        for key in ["id", "name", "email", "age", "score", "active", "country", "team", "logs"] {
            assert!(v.get(key).is_some(), "{key} missing");
        }
        assert_eq!(v["logs"][0]["action"], "login");
        assert_eq!(v["team"]["projects"][0]["completed"], true);
        assert_eq!(s.id(3), s.id(3));
        assert_ne!(s.id(3), s.id(4));
    }
}
