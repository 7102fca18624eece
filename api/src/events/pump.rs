//! The pod's one subscription to the workers' events, fanned out in-process.
//!
//! `events.orders` goes to the owner's connections as soon as it arrives (with
//! whatever else is already waiting, grouped by user).
//! `events.tickets` updates the ticket cache at once (the order hot path reads
//! it), and reaches every connection coalesced: the latest stock of each ticket
//! that changed, at most once per [`ticket_flush_gap`] (100 ms, longer past 1,000 clients). Stock is a state, not
//! a delta, so a client loses nothing by skipping intermediate values, and a
//! flash sale's hundreds of updates a second cost every client ten frames.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tps_contract::event::{ClientEvent, decode_events};
use tps_contract::{OrderUpdated, TicketUpdated};
use uuid::Uuid;

use super::hub::{Batch, Hub};
use crate::telemetry::metrics;
use crate::tickets::TicketCache;

/// Shortest gap between two ticket flushes (see [`ticket_flush_gap`]). The first
/// change after a quiet spell goes out at once; changes within the gap wait for its end.
pub const TICKET_FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The gap between ticket flushes with `clients` connections on this pod: 100 ms up to
/// 1,000 clients, then 100 ms more per further 1,000, capped at 1 s. The pod then sends
/// at most about 10,000 stock frames a second however many clients it holds, so a
/// flash sale watched by 10,000 browsers does not starve the order path of CPU, and
/// stock is still never more than a second behind.
pub fn ticket_flush_gap(clients: usize) -> Duration {
    TICKET_FLUSH_EVERY * clients.div_ceil(1_000).clamp(1, 10) as u32
}

/// Order events delivered in one go (whole messages: a worker's batch may pass it by up
/// to 255), so ticket events are never kept waiting long.
const MAX_ORDER_DRAIN: usize = 1024;

/// Reads both subjects until the NATS client closes. Stock goes out from a task of its
/// own ([`fan_out_stock`]): a broadcast to every connection is paced, and order updates do
/// not wait for it.
pub async fn run(
    mut orders: async_nats::Subscriber,
    mut tickets: async_nats::Subscriber,
    cache: Arc<TicketCache>,
    hub: Arc<Hub>,
) {
    let (stock, changes) = mpsc::unbounded_channel();
    let fan_out = tokio::spawn(fan_out_stock(changes, hub.clone()));
    loop {
        tokio::select! {
            Some(msg) = orders.next() => deliver_orders(&hub, msg, &mut orders),
            Some(msg) = tickets.next() => {
                for event in parse::<TicketUpdated>(&msg.payload, "ticket") {
                    cache.apply(&event);
                    let _ = stock.send(event);
                }
            }
            else => break,
        }
    }
    drop(stock);
    let _ = fan_out.await;
    tracing::warn!("event subscriptions ended; live updates stop");
}

/// Coalesces stock changes (the latest per ticket) and broadcasts them: the first change
/// after a quiet spell at once, later ones at most once per [`ticket_flush_gap`]. One
/// broadcast at a time, so every client sees each ticket's stock in order.
async fn fan_out_stock(mut changes: mpsc::UnboundedReceiver<TicketUpdated>, hub: Arc<Hub>) {
    let mut pending: HashMap<Uuid, TicketUpdated> = HashMap::new();
    let mut next_flush = Instant::now();
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Some(event) => {
                    pending.insert(event.ticket_id, event);
                    if Instant::now() >= next_flush {
                        flush_tickets(&hub, &mut pending).await;
                        next_flush = Instant::now() + ticket_flush_gap(hub.len());
                    }
                }
                None => break,
            },
            () = tokio::time::sleep_until(next_flush), if !pending.is_empty() => {
                flush_tickets(&hub, &mut pending).await;
                next_flush = Instant::now() + ticket_flush_gap(hub.len());
            }
        }
    }
}

/// The events of one message (one, or an array of them; see [`decode_events`]); a
/// malformed message is dropped whole.
fn parse<T: serde::de::DeserializeOwned>(payload: &[u8], kind: &'static str) -> Vec<T> {
    match decode_events(payload) {
        Ok(events) => {
            metrics().events_received.get(kind).inc_by(events.len() as u64);
            events
        }
        Err(e) => {
            metrics().events_received.get(kind).inc();
            tracing::debug!(error = %e, kind, "ignoring a malformed event");
            Vec::new()
        }
    }
}

/// Delivers the events of `first` and of the messages already waiting behind it, one batch
/// per user: a burst (one settled batch of a busy buyer) takes one place in
/// that user's queues instead of one per event.
fn deliver_orders(hub: &Hub, first: async_nats::Message, more: &mut async_nats::Subscriber) {
    let mut by_user: HashMap<String, (Vec<Utf8Bytes>, Vec<chrono::DateTime<chrono::Utc>>)> = HashMap::new();
    let mut events = parse::<OrderUpdated>(&first.payload, "order");
    while events.len() < MAX_ORDER_DRAIN
        && let Some(msg) = more.next().now_or_never().flatten()
    {
        events.extend(parse::<OrderUpdated>(&msg.payload, "order"));
    }
    for event in events {
        let committed = event.order.processed_at;
        if let Some(committed) = committed {
            let delay = (chrono::Utc::now() - committed).to_std().unwrap_or_default();
            metrics().order_event_delay.observe(delay.as_secs_f64());
        }
        if hub.has_user(&event.user_id) {
            let (texts, commits) = by_user.entry(event.user_id).or_default();
            texts.push(text(&ClientEvent::OrderUpdated { order: event.order }));
            commits.extend(committed);
        }
    }
    for (user, (texts, commits)) in by_user {
        hub.to_user(&user, &Batch::orders(texts, commits));
    }
}

async fn flush_tickets(hub: &Hub, pending: &mut HashMap<Uuid, TicketUpdated>) {
    let batch: Batch = pending.drain().map(|(_, t)| text(&ClientEvent::from(t))).collect();
    if !batch.is_empty() && !hub.is_empty() {
        hub.to_everyone(&batch).await;
    }
}

fn text(event: &ClientEvent) -> Utf8Bytes {
    // A ClientEvent is plain data: serializing it cannot fail.
    Utf8Bytes::from(serde_json::to_string(event).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stock_push_gap_grows_with_the_clients_up_to_a_second() {
        assert_eq!(ticket_flush_gap(0), Duration::from_millis(100));
        assert_eq!(ticket_flush_gap(1_000), Duration::from_millis(100));
        assert_eq!(ticket_flush_gap(1_001), Duration::from_millis(200));
        assert_eq!(ticket_flush_gap(10_000), Duration::from_secs(1));
        assert_eq!(ticket_flush_gap(1_000_000), Duration::from_secs(1));
    }
}
