//! Orders: the `POST /v1/orders` request of a run, what a 202 leaves us, and
//! the verification of every accepted order through the API and Postgres.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Deserialize;
use uuid::Uuid;

use crate::http::{Answer, Call, Conn};
use crate::load::PhaseRun;
use crate::report::Settle;
use crate::report::flow::{Flow, Tracked};
use crate::scenario::context::{Context, Outcome, bar, secs_between};
use crate::scenario::setup::User;
use crate::verify::ledger::last_order_commit;
use crate::verify::poll::{Pollee, settle};
use crate::verify::{OrderTally, Source, TicketTally, order_verdicts};
use crate::verify::{TicketDemand, order_tally};

/// One 202: the order id from the body, who asked, for which ticket row, how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Order id.
    pub id: Uuid,
    /// Index of the buyer.
    pub user: u32,
    /// Index of the ticket row.
    pub row: u32,
    /// Quantity.
    pub quantity: u32,
    /// When the 202 arrived.
    pub answered_at: SystemTime,
}

/// Builds order `n` of a run: buyer `user`, ticket row `row`, and a unique key.
pub struct OrderMaker {
    /// The ticket rows.
    pub tickets: Vec<Uuid>,
    /// The buyers.
    pub users: Arc<Vec<User>>,
    /// Quantity per order.
    pub quantity: u32,
    /// Run tag for idempotency keys.
    pub run_id: String,
    bodies: Vec<Bytes>,
}

#[derive(Deserialize)]
struct Body {
    id: Uuid,
}

impl OrderMaker {
    /// Pre-renders one body per ticket row.
    pub fn new(tickets: Vec<Uuid>, users: Arc<Vec<User>>, quantity: u32, run_id: String) -> Self {
        let bodies = tickets
            .iter()
            .map(|t| Bytes::from(serde_json::json!({ "ticketId": t, "quantity": quantity }).to_string()))
            .collect();
        Self { tickets, users, quantity, run_id, bodies }
    }

    /// The order request number `n` (key `lt-{run}-{n}`).
    pub fn call(&self, n: u64, user: u32, row: u32) -> Call {
        let mut call = Call::post("/v1/orders", self.bodies[row as usize].clone())
            .with_auth(self.users[user as usize].auth.clone());
        call.idempotency_key = Some(format!("lt-{}-{n}", self.run_id));
        call
    }

    /// What a 202 leaves us.
    pub fn accepted(&self, answer: &Answer, user: u32, row: u32) -> Option<Accepted> {
        if answer.status != 202 {
            return None;
        }
        let body: Body = serde_json::from_slice(&answer.body).ok()?;
        Some(Accepted { id: body.id, user, row, quantity: self.quantity, answered_at: SystemTime::now() })
    }
}

/// Polls every accepted order to its end, then judges the run through the API
/// and, with `--database-url`, through Postgres.
pub async fn verify<N>(
    ctx: &Context,
    maker: &OrderMaker,
    run: &PhaseRun<N>,
    accepted: &[Accepted],
    stock: &[u64],
) -> Outcome {
    let mut outcome = Outcome::default();
    let distinct: HashSet<Uuid> = accepted.iter().map(|a| a.id).collect();
    let pollees = accepted
        .iter()
        .map(|a| Pollee {
            path: format!("/v1/orders/{}", a.id),
            auth: Some(maker.users[a.user as usize].auth.clone()),
        })
        .collect();
    let bar = bar(accepted.len() as u64, "settling");
    let polled =
        settle(&ctx.target, pollees, ctx.common.connections.min(256), ctx.common.settle_timeout, &bar).await;
    bar.finish_and_clear();

    let rows = maker.tickets.len();
    let (mut sold, mut demand) = (vec![0u64; rows], vec![0u64; rows]);
    for a in accepted {
        demand[a.row as usize] += u64::from(a.quantity);
    }
    let mut last_commit: Option<SystemTime> = None;
    let mut rejected = 0u64;
    let mut tracked: Vec<Tracked> =
        accepted.iter().map(|a| Tracked { accepted_at: a.answered_at, settled_at: None, sold: 0 }).collect();
    for (i, o) in &polled.finals {
        let a = accepted[*i];
        let confirmed = o.status == "CONFIRMED";
        if confirmed {
            sold[a.row as usize] += u64::from(a.quantity);
        } else {
            rejected += 1;
        }
        let commit = o.processed_at.map(SystemTime::from);
        tracked[*i].settled_at = commit;
        tracked[*i].sold = if confirmed { u64::from(a.quantity) } else { 0 };
        last_commit = last_commit.max(commit);
    }
    outcome.flow = Some(Flow::of(run.started_wall, stock.iter().sum(), &tracked));
    // `available` may lag by a second; give the caches time to catch up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut tickets = Vec::new();
    for (r, id) in maker.tickets.iter().enumerate() {
        let available = available(ctx, *id).await;
        if available.is_none() {
            outcome
                .notes
                .push(format!("GET /v1/tickets/{id} gave no `available`; stock check skipped for it"));
        }
        tickets.push(TicketTally { id: *id, stock: stock[r], sold: sold[r], available, demand: demand[r] });
    }
    let api = OrderTally {
        source: Source::Api,
        accepted: distinct.len() as u64,
        not_settled: Some(polled.pending.len() as u64),
        lost: polled.missing.len() as u64,
        duplicates: (accepted.len() - distinct.len()) as u64,
        phantom: None,
        tickets,
        max_quantity: u64::from(maker.quantity),
    };
    outcome.verdicts.extend(order_verdicts(&api));
    let all_final = polled.pending.is_empty() && polled.missing.is_empty();
    outcome.settle = Some(Settle {
        after_last_request_s: last_commit
            .filter(|_| all_final)
            .map(|t| secs_between(run.last_sent_wall(), t).max(0.0)),
        after_start_s: last_commit.filter(|_| all_final).map(|t| secs_between(run.started_wall, t)),
        method: "processedAt".to_owned(),
        poll_rounds: polled.rounds,
    });
    let total_sold: u64 = sold.iter().sum();
    outcome.facts = serde_json::json!({
        "stock": stock.iter().sum::<u64>(), "sold": total_sold, "accepted": distinct.len(),
        "confirmed": polled.finals.len() as u64 - rejected, "rejected": rejected,
        "unanswered": run.unanswered.len(), "ticketIds": maker.tickets,
    });
    if let Some(url) = &ctx.common.database_url {
        postgres(url, maker, run, accepted, &demand, &mut outcome).await;
    }
    outcome
}

async fn available(ctx: &Context, id: Uuid) -> Option<u64> {
    let mut conn = Conn::open(&ctx.target, None).await.ok()?;
    let user = crate::scenario::setup::users(&ctx.common.jwt_secret, &ctx.run_id, 1).pop()?;
    let v: serde_json::Value = conn
        .json("get ticket", &Call::get(format!("/v1/tickets/{id}")).with_auth(user.auth), 200)
        .await
        .ok()?;
    v.get("available")?.as_u64()
}

async fn postgres<N>(
    url: &str,
    maker: &OrderMaker,
    run: &PhaseRun<N>,
    accepted: &[Accepted],
    demand: &[u64],
    outcome: &mut Outcome,
) {
    let pool = match tps_runtime::db::connect(url, 2).await {
        Ok(p) => p,
        Err(e) => {
            outcome.verdicts.push(crate::verify::Verdict {
                check: "postgres",
                source: Source::Postgres,
                ok: false,
                detail: format!("cannot connect: {e}"),
            });
            return;
        }
    };
    let ids: Vec<Uuid> = accepted.iter().map(|a| a.id).collect();
    let demands: Vec<TicketDemand> =
        maker.tickets.iter().zip(demand).map(|(id, d)| TicketDemand { id: *id, demand: *d }).collect();
    match order_tally(&pool, &demands, &ids, run.unanswered.len() as u64, u64::from(maker.quantity)).await {
        Ok(tally) => outcome.verdicts.extend(order_verdicts(&tally)),
        Err(e) => outcome.verdicts.push(crate::verify::Verdict {
            check: "postgres",
            source: Source::Postgres,
            ok: false,
            detail: format!("cannot read the ledger: {e}"),
        }),
    }
    if let Ok(Some(last)) = last_order_commit(&pool, &maker.tickets).await {
        outcome.notes.push(format!(
            "last commit in Postgres {:.2} s after the last request",
            secs_between(run.last_sent_wall(), last)
        ));
    }
}
