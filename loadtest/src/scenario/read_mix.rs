//! `read-mix`: the ticket listing and single gets, with a small share of
//! orders, against tickets with plenty of stock.
//!
//! Request `i` is an order, a get or a listing by a fixed hash of `i`, so every
//! run with the same flags sends the same mix. Each route's latency is reported
//! on its own; the ratio compares the whole mix with the no-op route (run with
//! `--order-share 0 --get-share 0` to measure the cached listing alone).

use std::sync::Arc;

use crate::cli::ReadMixArgs;
use crate::error::Result;
use crate::http::{Answer, Call};
use crate::load::Workload;
use crate::report::Report;
use crate::scenario::context::Context;
use crate::scenario::orders::{self, Accepted, OrderMaker};
use crate::scenario::{noop, setup};

/// Route tags, in the order of [`ROUTES`].
const LIST: u8 = 0;
const GET: u8 = 1;
const ORDER: u8 = 2;
const ROUTES: [&str; 3] = ["list", "get", "order"];

struct ReadMix {
    maker: OrderMaker,
    users: u64,
    order_share: f64,
    get_share: f64,
    page_size: u32,
}

impl ReadMix {
    fn route(&self, i: u64) -> u8 {
        let x = ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 10_000) as f64 / 10_000.0;
        if x < self.order_share {
            ORDER
        } else if x < self.order_share + self.get_share {
            GET
        } else {
            LIST
        }
    }

    fn who(&self, i: u64) -> (u32, u32) {
        ((i % self.users) as u32, (i % self.maker.tickets.len() as u64) as u32)
    }
}

impl Workload for ReadMix {
    type Note = Accepted;

    fn call(&self, i: u64) -> Call {
        let (user, row) = self.who(i);
        let auth = self.maker.users[user as usize].auth.clone();
        match self.route(i) {
            ORDER => self.maker.call(i, user, row).with_route(ORDER),
            GET => Call::get(format!("/v1/tickets/{}", self.maker.tickets[row as usize]))
                .with_auth(auth)
                .with_route(GET),
            _ => Call::get(format!("/v1/tickets?limit={}", self.page_size)).with_auth(auth).with_route(LIST),
        }
    }

    fn note(&self, i: u64, answer: &Answer) -> Option<Accepted> {
        let (user, row) = self.who(i);
        (self.route(i) == ORDER).then(|| self.maker.accepted(answer, user, row)).flatten()
    }
}

/// Runs the mix and verifies its orders.
pub async fn run(args: ReadMixArgs) -> Result<Report> {
    let ctx = Context::new(args.common.clone())?;
    crate::nofile::raise_nofile(args.common.connections as u64 + 1024)?;
    let users = Arc::new(setup::users(&ctx.common.jwt_secret, &ctx.run_id, args.users.max(1)));
    let admin = setup::admin(&ctx.common.jwt_secret, &ctx.run_id);
    let rows = args.ticket_rows.max(1);
    let mut tickets = Vec::new();
    for r in 0..rows {
        tickets.push(
            setup::create_ticket(
                &ctx.target,
                &admin,
                &format!("Read mix {} #{r}", ctx.run_id),
                args.stock,
                5,
            )
            .await?,
        );
    }
    let stock = vec![args.stock; rows as usize];
    let plan = ctx.plan(args.requests, ctx.common.connections, 1);
    let baseline = noop::baseline(&ctx, plan.clone()).await;
    let workload = Arc::new(ReadMix {
        maker: OrderMaker::new(tickets, users, 1, ctx.run_id.clone()),
        users: args.users.max(1),
        order_share: args.order_share.clamp(0.0, 1.0),
        get_share: args.get_share.clamp(0.0, 1.0),
        page_size: args.page_size,
    });
    let (run, main) = ctx.measure("read-mix", plan, workload.clone(), &ROUTES).await;
    let outcome = orders::verify(&ctx, &workload.maker, &run, &run.notes, &stock).await;
    let phases = baseline.into_iter().chain([main]).collect();
    Ok(ctx.report("read-mix", serde_json::to_value(&args)?, phases, outcome))
}
