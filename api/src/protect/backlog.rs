//! Consumer lag, polled in the background: when the workers are further behind
//! than the bound, new commands get 503 + `Retry-After` instead of a 202 that
//! would only deepen a queue nobody is draining.
//!
//! Polled (one stream-info request per stream every `--lag-poll-ms`), never per
//! request: the hot path reads one atomic. The command streams have WorkQueue
//! retention, so the messages a stream holds are exactly its unsettled commands
//! (delivered and unacked, or not yet delivered), summed over its shards. One
//! request per stream instead of one consumer-info per shard: with 16 shards
//! and two streams, that was 32 requests a second per api pod, each a snapshot
//! of a busy consumer's state, about 5 % of the NATS server's CPU under load.
//! Only a stream not yet migrated from Limits retention is still measured per shard.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::stream::RetentionPolicy;
use prometheus::IntGauge;
use tps_contract::subject::StreamNames;

use crate::telemetry::{gauge_value, metrics};

/// The last measured lag of one stream's consumers (orders, or sign-ups).
#[derive(Debug, Default)]
pub struct Backlog {
    /// Messages not yet acked, summed over the shards (delivered or not).
    lag: AtomicU64,
    /// Above this, new commands are refused; 0 turns the check off.
    bound: u64,
}

impl Backlog {
    /// A backlog refusing beyond `bound` messages (0: never).
    pub fn new(bound: u64) -> Self {
        Self { lag: AtomicU64::new(0), bound }
    }

    /// The last measured lag.
    pub fn lag(&self) -> u64 {
        self.lag.load(Ordering::Relaxed)
    }

    /// Whether the workers are further behind than the bound.
    pub fn is_over(&self) -> bool {
        self.bound > 0 && self.lag() > self.bound
    }
}

/// Measures the lag of every shard of `stream` every `every`, forever, exported as `gauge`
/// (on `/metrics` from the first measurement, so never while the bound is off).
pub async fn watch_forever(
    backlog: Arc<Backlog>,
    js: jetstream::Context,
    names: StreamNames,
    stream: &'static str,
    gauge: &'static IntGauge,
    shards: u32,
    every: Duration,
) {
    if backlog.bound == 0 {
        return;
    }
    let mut shown = false;
    loop {
        if let Some(lag) = measure(&js, &names, stream, shards).await {
            backlog.lag.store(lag, Ordering::Relaxed);
            gauge.set(gauge_value(lag));
            if !shown {
                metrics().expose(gauge);
                shown = true;
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// The unsettled commands of the stream; `None` when JetStream does not answer (then the
/// last value stands, and a dead NATS refuses publishes anyway). With WorkQueue retention
/// that is the stream's message count. A stream an older release left with Limits retention
/// (not migrated yet) also keeps settled commands, so there the shard consumers' pending
/// and unacked messages are summed instead, one consumer info each, as before.
async fn measure(js: &jetstream::Context, names: &StreamNames, name: &str, shards: u32) -> Option<u64> {
    let stream = js.get_stream(names.stream(name)).await.ok()?;
    let info = stream.cached_info();
    if info.config.retention == RetentionPolicy::WorkQueue {
        return Some(info.state.messages);
    }
    let mut lag = 0;
    for shard in 0..shards {
        match stream.consumer_info(names.consumer(name, shard)).await {
            Ok(info) => lag += info.num_pending + info.num_ack_pending as u64,
            Err(e) if matches!(e.kind(), ConsumerInfoErrorKind::NotFound) => {}
            Err(_) => return None,
        }
    }
    Some(lag)
}
