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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
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
    every: Duration,
) {
    if backlog.bound == 0 {
        return;
    }
    let mut shown = false;
    loop {
        if let Some(lag) = measure(&js, &names, stream).await {
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

/// The unsettled commands of the stream (its message count: WorkQueue retention);
/// `None` when JetStream does not answer (then the last value stands, and a dead NATS
/// refuses publishes anyway).
async fn measure(js: &jetstream::Context, names: &StreamNames, name: &str) -> Option<u64> {
    let stream = js.get_stream(names.stream(name)).await.ok()?;
    Some(stream.cached_info().state.messages)
}
