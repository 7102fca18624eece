//! Orders: the [`CommandKind`] that settles `OrderCommand`s from `orders.<shard>`.
//!
//! In one transaction: skip what is already settled, lock the batch's tickets,
//! decide every new order in arrival order, take the stock with one conditional
//! UPDATE per ticket, and insert the orders in one statement.

mod ledger;
mod store;

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use sqlx::PgConnection;
use tps_contract::event::MAX_EVENTS_PER_MESSAGE;
use tps_contract::subject::{ORDER_EVENTS, ORDERS_STREAM, StreamNames, TICKET_EVENTS};
use tps_contract::{OrderCommand, OrderReason, OrderStatus, OrderUpdated, TicketUpdated};
use uuid::Uuid;

pub use ledger::{Ledger, Outcome, Stock};
pub use store::OrderRow;

use crate::metrics;
use crate::settling::command_kind::{CommandKind, Delivery};

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
        // Lock order: the batch's tickets (in id order; a ticket belongs to one shard), then
        // the new order ids (inserted in id order). Stock is taken only after the insert, for
        // the rows it actually inserted.
        let locked = store::lock_tickets(tx, &tickets).await?;
        let processed_at = store::commit_clock(tx).await?;
        let mut replayed = replayed;
        loop {
            let mut ledger = Ledger::new(locked.clone());
            let rows: Vec<OrderRow> = fresh
                .iter()
                .map(|d| {
                    let c = &d.command;
                    let outcome = ledger.decide(c.ticket_id, c.quantity);
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
                        detail: None,
                    }
                })
                .collect();
            let inserted = store::insert(tx, &rows).await?;
            if inserted.len() == rows.len() {
                store::decrement(tx, &confirmed_per_ticket(&rows, &inserted)).await?;
                return Ok(SettledOrders {
                    inserted: rows,
                    replayed,
                    duplicates,
                    tickets: ledger.remaining(),
                });
            }
            // Some ids were settled meanwhile by another transaction (the same order id on
            // another shard: same user and key, another ticket). Those rows are not ours and
            // take no stock here; the grants are decided again without them, so stock they
            // would have taken goes to the next in line.
            let ours: Vec<Uuid> = inserted.iter().copied().collect();
            store::uninsert(tx, &ours).await?;
            let taken: Vec<Uuid> = rows.iter().map(|r| r.id).filter(|id| !inserted.contains(id)).collect();
            tracing::warn!(
                n = taken.len(),
                "order ids already settled by another shard; deciding the batch again"
            );
            let theirs = store::existing(tx, &taken).await?;
            if theirs.len() != taken.len() {
                // Not visible yet: the other transaction has not committed; try the batch again.
                return Err(sqlx::Error::Protocol(
                    "an order id was taken by an uncommitted transaction".into(),
                ));
            }
            let theirs_ids: HashSet<Uuid> = taken.into_iter().collect();
            fresh.retain(|d| !theirs_ids.contains(&d.command.order_id));
            replayed.extend(theirs);
        }
    }

    /// An order that failed every delivery is stored REJECTED with reason INVALID and the
    /// failure in `detail`, so its owner reads a final answer; no stock moves. An order
    /// already settled (by an earlier attempt or a replay) stays as it is.
    async fn give_up(
        &self,
        tx: &mut PgConnection,
        d: &Delivery<OrderCommand>,
        detail: &str,
    ) -> Result<Option<(SettledOrders, String)>, sqlx::Error> {
        let c = &d.command;
        let detail: String =
            detail.chars().map(|ch| if ch.is_control() { ' ' } else { ch }).take(2000).collect();
        let row = OrderRow {
            id: c.order_id,
            user_id: c.user_id.clone(),
            ticket_id: c.ticket_id,
            quantity: c.quantity as i32,
            status: OrderStatus::Rejected,
            reason: Some(OrderReason::Invalid),
            idempotency_key: c.idempotency_key.clone(),
            stream_seq: d.seq as i64,
            created_at: c.accepted_at,
            processed_at: store::commit_clock(tx).await?,
            detail: Some(detail),
        };
        if store::insert(tx, std::slice::from_ref(&row)).await?.contains(&row.id) {
            let label = outcome_label(&row);
            return Ok(Some((SettledOrders { inserted: vec![row], ..Default::default() }, label)));
        }
        let replayed = store::existing(tx, &[row.id]).await?;
        let label = replayed.first().map(outcome_label).unwrap_or_default();
        Ok(Some((SettledOrders { replayed, ..Default::default() }, label)))
    }

    async fn announce(&self, nats: &async_nats::Client, names: &StreamNames, settled: SettledOrders) {
        for row in &settled.inserted {
            metrics::settled(ORDERS_STREAM, row.reason.map_or("CONFIRMED", |r| r.as_str()), 1);
            let lag = (row.processed_at - row.created_at).to_std().unwrap_or_default();
            metrics::settle_lag(ORDERS_STREAM, lag);
        }
        metrics::settled(ORDERS_STREAM, "DUPLICATE", settled.replayed.len() as u64 + settled.duplicates);
        // One message per batch (in slices of MAX_EVENTS_PER_MESSAGE), not one per order:
        // NATS and every api pod then handle a message per batch.
        let orders: Vec<OrderUpdated> =
            settled.inserted.iter().chain(&settled.replayed).map(OrderRow::event).collect();
        for events in orders.chunks(MAX_EVENTS_PER_MESSAGE) {
            publish(nats, names.subject(ORDER_EVENTS), &events).await;
        }
        let tickets: Vec<TicketUpdated> = settled
            .tickets
            .into_iter()
            .map(|(ticket_id, available)| TicketUpdated { ticket_id, available, sold_out: available == 0 })
            .collect();
        for events in tickets.chunks(MAX_EVENTS_PER_MESSAGE) {
            publish(nats, names.subject(TICKET_EVENTS), &events).await;
        }
    }
}

/// `CONFIRMED`, or `REJECTED` and the reason.
fn outcome_label(row: &OrderRow) -> String {
    match row.reason {
        Some(reason) => format!("{} {}", row.status.as_str(), reason.as_str()),
        None => row.status.as_str().to_owned(),
    }
}

/// Confirmed quantity per ticket among the rows actually inserted, in ticket order.
fn confirmed_per_ticket(rows: &[OrderRow], inserted: &HashSet<Uuid>) -> Vec<(Uuid, i64)> {
    let mut per: BTreeMap<Uuid, i64> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.status == OrderStatus::Confirmed && inserted.contains(&r.id)) {
        *per.entry(r.ticket_id).or_default() += i64::from(r.quantity);
    }
    per.into_iter().collect()
}

/// Events are best effort: a client that misses one reads the order back.
async fn publish(nats: &async_nats::Client, subject: String, event: &impl serde::Serialize) {
    let Ok(payload) = serde_json::to_vec(event) else { return };
    if let Err(e) = nats.publish(subject.clone(), Bytes::from(payload)).await {
        tracing::debug!(error = %e, subject, "event not published");
    }
}
