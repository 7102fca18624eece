//! Orders: the [`CommandKind`] that settles `OrderCommand`s from `orders.<shard>`.
//!
//! In one transaction: skip what is already settled, lock the batch's tickets,
//! decide every new order in arrival order, take the stock with one conditional
//! UPDATE per ticket, and insert the orders in one statement.

mod ledger;
mod store;

use std::collections::HashSet;

use bytes::Bytes;
use sqlx::PgConnection;
use tps_contract::subject::{ORDER_EVENTS, ORDERS_STREAM, TICKET_EVENTS};
use tps_contract::{OrderCommand, TicketUpdated};
use uuid::Uuid;

pub use ledger::{Ledger, Outcome, Stock};
pub use store::OrderRow;

use crate::metrics;
use crate::settle::{CommandKind, Delivery};

/// Settles order commands.
#[derive(Debug, Clone, Copy, Default)]
pub struct Orders;

/// What one committed batch of orders changed.
#[derive(Debug, Default)]
pub struct SettledOrders {
    /// Orders inserted by this batch.
    pub inserted: Vec<OrderRow>,
    /// Orders found already settled (redeliveries); their events are sent again.
    pub replayed: Vec<OrderRow>,
    /// Messages repeating an order id earlier in the same batch.
    pub duplicates: u64,
    /// Stock left of every ticket the batch locked.
    pub tickets: Vec<(Uuid, i64)>,
}

impl CommandKind for Orders {
    const STREAM: &'static str = ORDERS_STREAM;
    type Command = OrderCommand;
    type Settled = SettledOrders;

    fn validate(&self, command: &OrderCommand) -> Result<(), String> {
        // The orders table only stores 1..=i32::MAX (the api never accepts anything else).
        match i32::try_from(command.quantity) {
            Ok(q) if q >= 1 => Ok(()),
            _ => Err(format!("quantity {} cannot be stored", command.quantity)),
        }
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        batch: &[Delivery<OrderCommand>],
    ) -> Result<SettledOrders, sqlx::Error> {
        let ids: Vec<Uuid> = batch.iter().map(|d| d.command.order_id).collect();
        let replayed = store::existing(tx, &ids).await?;
        let mut seen: HashSet<Uuid> = replayed.iter().map(|r| r.id).collect();
        let mut fresh: Vec<&Delivery<OrderCommand>> = Vec::with_capacity(batch.len());
        let mut duplicates = 0;
        for d in batch {
            if seen.insert(d.command.order_id) { fresh.push(d) } else { duplicates += 1 }
        }
        // First come, first served: decide strictly in stream order.
        fresh.sort_by_key(|d| d.seq);

        let mut tickets: Vec<Uuid> = fresh.iter().map(|d| d.command.ticket_id).collect();
        tickets.sort();
        tickets.dedup();
        let mut ledger = Ledger::new(store::lock_tickets(tx, &tickets).await?);
        let outcomes: Vec<Outcome> =
            fresh.iter().map(|d| ledger.decide(d.command.ticket_id, d.command.quantity)).collect();
        for (ticket, n) in ledger.decrements() {
            store::decrement(tx, ticket, n).await?;
        }
        let processed_at = store::commit_clock(tx).await?;
        let inserted: Vec<OrderRow> = fresh
            .iter()
            .zip(outcomes)
            .map(|(d, outcome)| {
                let c = &d.command;
                OrderRow {
                    id: c.order_id,
                    user_id: c.user_id.clone(),
                    ticket_id: c.ticket_id,
                    quantity: c.quantity as i32,
                    status: outcome.status(),
                    reason: outcome.reason(),
                    idempotency_key: c.idempotency_key.clone(),
                    stream_seq: d.seq as i64,
                    created_at: c.accepted_at,
                    processed_at,
                }
            })
            .collect();
        store::insert(tx, &inserted).await?;
        Ok(SettledOrders { inserted, replayed, duplicates, tickets: ledger.remaining() })
    }

    async fn announce(&self, nats: &async_nats::Client, settled: SettledOrders) {
        for row in &settled.inserted {
            metrics::settled(ORDERS_STREAM, row.reason.map_or("CONFIRMED", |r| r.as_str()), 1);
            let lag = (row.processed_at - row.created_at).to_std().unwrap_or_default();
            metrics::settle_lag(ORDERS_STREAM, lag);
        }
        metrics::settled(ORDERS_STREAM, "DUPLICATE", settled.replayed.len() as u64 + settled.duplicates);
        for row in settled.inserted.iter().chain(&settled.replayed) {
            publish(nats, ORDER_EVENTS, &row.event()).await;
        }
        for (ticket_id, available) in settled.tickets {
            publish(nats, TICKET_EVENTS, &TicketUpdated { ticket_id, available, sold_out: available == 0 })
                .await;
        }
    }
}

/// Events are best effort: a client that misses one reads the order back.
async fn publish(nats: &async_nats::Client, subject: &'static str, event: &impl serde::Serialize) {
    let Ok(payload) = serde_json::to_vec(event) else { return };
    if let Err(e) = nats.publish(subject, Bytes::from(payload)).await {
        tracing::debug!(error = %e, subject, "event not published");
    }
}
