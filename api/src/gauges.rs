//! Gauges sampled in the background rather than per request: the JetStream
//! backlog of every shard, the dead letters stored, and the stock left.
//!
//! Polled from the api (not the worker) so that a shard nobody owns still
//! shows its backlog. Every api replica reports the same numbers; dashboards
//! take `max by (shard)`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use tps_contract::subject::{DEAD_LETTER_STREAM, ORDERS_STREAM, StreamNames};

use crate::telemetry::{gauge_value, metrics};
use crate::tickets::TicketCache;

/// How often the gauges are refreshed; a few JetStream API requests each time.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// Refreshes the gauges every [`POLL_EVERY`] until aborted.
pub async fn poll_forever(
    js: jetstream::Context,
    names: StreamNames,
    tickets: Arc<TicketCache>,
    shards: u32,
) {
    metrics().shards_configured.set(i64::from(shards));
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sample_stock(&tickets);
        sample_backlog(&js, &names, shards).await;
        sample_dead_letters(&js, &names).await;
    }
}

fn sample_stock(tickets: &TicketCache) {
    let stock = tickets.stock();
    let m = metrics();
    m.tickets_available.set(stock.available);
    m.tickets_sold_out.set(gauge_value(stock.sold_out));
    m.tickets_known.set(gauge_value(stock.tickets));
}

/// Backlog = commands not yet delivered plus delivered but not acknowledged:
/// everything accepted with a 202 that is not settled yet. One consumer-list request
/// answers for every shard (up to 256 consumers a page), not one consumer-info each.
async fn sample_backlog(js: &jetstream::Context, names: &StreamNames, shards: u32) {
    let Ok(stream) = js.get_stream_no_info(names.stream(ORDERS_STREAM)).await else {
        return tracing::debug!("orders stream not readable; backlog gauges not refreshed");
    };
    let shard_of: HashMap<String, u32> =
        (0..shards).map(|shard| (names.consumer(ORDERS_STREAM, shard), shard)).collect();
    let mut consumers = stream.consumers();
    while let Some(listed) = consumers.next().await {
        match listed {
            // A consumer that is not a shard's (a stranger, or a shard beyond SHARDS) is skipped;
            // a shard without a consumer (no worker has started yet) keeps its gauge absent.
            Ok(info) => {
                if let Some(shard) = shard_of.get(&info.name) {
                    let label = shard.to_string();
                    let m = metrics();
                    m.orders_backlog.with_label_values(&[&label]).set(gauge_value(info.num_pending));
                    m.orders_unacked.with_label_values(&[&label]).set(gauge_value(info.num_ack_pending));
                }
            }
            Err(e) => return tracing::debug!(error = %e, "consumer list unavailable"),
        }
    }
}

async fn sample_dead_letters(js: &jetstream::Context, names: &StreamNames) {
    // `get_stream` is itself the stream-info request.
    if let Ok(stream) = js.get_stream(names.stream(DEAD_LETTER_STREAM)).await {
        metrics().dead_letters_stored.set(gauge_value(stream.cached_info().state.messages));
    }
}
