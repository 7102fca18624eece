//! `flash-sale`: N order requests from U buyers for T tickets of stock.
//!
//! The stock is split evenly over `--ticket-rows` ticket rows (default one row,
//! as in a real sale of one event). Request `i` is sent by buyer `i mod U` for
//! row `i mod R`, with the unique key `lt-{run}-{i}`. A sample of buyers hold a
//! WebSocket to time the pushed updates.

use std::sync::Arc;

use crate::cli::FlashSaleArgs;
use crate::error::Result;
use crate::http::{Answer, Call};
use crate::load::Workload;
use crate::report::Report;
use crate::scenario::context::Context;
use crate::scenario::orders::{self, Accepted, OrderMaker};
use crate::scenario::{noop, setup};
use crate::ws::WsSample;

struct FlashSale {
    maker: OrderMaker,
    users: u64,
}

impl FlashSale {
    fn who(&self, i: u64) -> (u32, u32) {
        ((i % self.users) as u32, (i % self.maker.tickets.len() as u64) as u32)
    }
}

impl Workload for FlashSale {
    type Note = Accepted;

    fn call(&self, i: u64) -> Call {
        let (user, row) = self.who(i);
        self.maker.call(i, user, row)
    }

    fn note(&self, i: u64, answer: &Answer) -> Option<Accepted> {
        let (user, row) = self.who(i);
        self.maker.accepted(answer, user, row)
    }
}

/// Runs the flash sale and verifies it.
pub async fn run(args: FlashSaleArgs) -> Result<Report> {
    let ctx = Context::new(args.common.clone())?;
    crate::nofile::raise_nofile(args.common.connections as u64 + args.ws_sample + 1024)?;
    let users = Arc::new(setup::users(&ctx.common.jwt_secret, &ctx.run_id, args.users.max(1)));
    let admin = setup::admin(&ctx.common.jwt_secret, &ctx.run_id);
    let stock = setup::split_stock(args.tickets, args.ticket_rows);
    let mut tickets = Vec::new();
    for (r, s) in stock.iter().enumerate() {
        let name = format!("Flash sale {} #{r}", ctx.run_id);
        tickets.push(setup::create_ticket(&ctx.target, &admin, &name, *s, args.quantity.max(5)).await?);
    }
    let plan = ctx.plan(args.requests, ctx.common.connections, 1);
    let baseline = noop::baseline(&ctx, plan.clone()).await;
    let sample: Vec<String> = users.iter().take(args.ws_sample as usize).map(|u| u.token.clone()).collect();
    let ws = WsSample::connect(&ctx.target, sample).await;
    let maker = OrderMaker::new(tickets, users.clone(), args.quantity, ctx.run_id.clone());
    let workload = Arc::new(FlashSale { maker, users: args.users.max(1) });
    let (run, main) = ctx.measure("flash-sale", plan, workload.clone(), &["orders"]).await;
    let mut outcome = orders::verify(&ctx, &workload.maker, &run, &run.notes, &stock).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let ws = ws.finish().await;
    if ws.connected < ws.clients {
        outcome
            .notes
            .push(format!("only {} of {} WebSockets opened on /v1/events", ws.connected, ws.clients));
    }
    outcome.websocket = Some(ws);
    let phases = baseline.into_iter().chain([main]).collect();
    Ok(ctx.report("flash-sale", serde_json::to_value(&args)?, phases, outcome))
}
