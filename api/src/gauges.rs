//! Gauges sampled in the background rather than per request: the JetStream
//! backlog of every shard, the dead letters stored, and the stock left.
//!
//! Polled from the api (not the worker) so that a shard nobody owns still
//! shows its backlog. Every api replica reports the same numbers; dashboards
//! take `max by (shard)`.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tps_contract::subject::{DEAD_LETTER_STREAM, ORDERS_STREAM, StreamNames};

use crate::tickets::TicketCache;

/// How often the gauges are refreshed; a JetStream API request per shard each time.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// Refreshes the gauges every [`POLL_EVERY`] until aborted.
pub async fn poll_forever(
    js: jetstream::Context,
    names: StreamNames,
    tickets: Arc<TicketCache>,
    shards: u32,
) {
    metrics::gauge!("tps_shards_configured").set(f64::from(shards));
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
    metrics::gauge!("tps_tickets_available").set(stock.available as f64);
    metrics::gauge!("tps_tickets_sold_out").set(stock.sold_out as f64);
    metrics::gauge!("tps_tickets_known").set(stock.tickets as f64);
}

/// Backlog = commands not yet delivered plus delivered but not acknowledged:
/// everything accepted with a 202 that is not settled yet.
async fn sample_backlog(js: &jetstream::Context, names: &StreamNames, shards: u32) {
    let Ok(stream) = js.get_stream(names.stream(ORDERS_STREAM)).await else {
        return tracing::debug!("orders stream not readable; backlog gauges not refreshed");
    };
    for shard in 0..shards {
        let label = shard.to_string();
        match stream.consumer_info(names.consumer(ORDERS_STREAM, shard)).await {
            Ok(info) => {
                metrics::gauge!("tps_orders_backlog_messages", "shard" => label.clone())
                    .set(info.num_pending as f64);
                metrics::gauge!("tps_orders_unacked_messages", "shard" => label)
                    .set(info.num_ack_pending as f64);
            }
            // No consumer yet: no worker has started; the gauge stays absent.
            Err(e) => tracing::debug!(shard, error = %e, "consumer info unavailable"),
        }
    }
}

async fn sample_dead_letters(js: &jetstream::Context, names: &StreamNames) {
    if let Ok(mut stream) = js.get_stream(names.stream(DEAD_LETTER_STREAM)).await
        && let Ok(info) = stream.info().await
    {
        metrics::gauge!("tps_dead_letters_stored_messages").set(info.state.messages as f64);
    }
}
