//! Pulling a batch from a shard's durable consumer, and decoding it.
//!
//! Every pull is one bounded request that ends before the next begins, so a
//! worker that stops or loses its lease never has messages pulled on its behalf
//! that it will not see: nothing waits out `ack_wait`. When idle it waits (up to
//! a second) for one message, lingers `batch_wait`, then takes what is there
//! without waiting (`no_wait`); while busy it takes a whole batch at once.
//! A `no_wait` fetch ends as soon as the server has nothing more, so we never
//! depend on the server's expiry notice, which nats-server 2.9 does not send
//! for a partly filled request.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;

use crate::settling::command_kind::{CommandKind, Delivery};

/// How long one pull waits for a first message before checking its lease again.
const IDLE_WAIT: Duration = Duration::from_millis(1_000);
/// Slack over the request's own expiry before we stop waiting for the server
/// (which does not always say that a request expired).
const SLACK: Duration = Duration::from_millis(250);

/// Pulls batches from one shard.
pub struct Puller {
    consumer: PullConsumer,
    batch_size: usize,
    linger: Duration,
    busy: bool,
}

/// A message that cannot become a command.
#[derive(Debug)]
pub struct Undecodable {
    /// The message.
    pub message: jetstream::Message,
    /// Why.
    pub reason: String,
}

/// The pull request failed before any message arrived.
#[derive(Debug, thiserror::Error)]
#[error("pull: {0}")]
pub struct PullError(pub String);

impl Puller {
    /// A puller over the shard's consumer.
    pub fn new(consumer: PullConsumer, batch_size: usize, linger: Duration) -> Self {
        Self { consumer, batch_size, linger, busy: false }
    }

    /// The next batch, sorted by stream sequence; empty when the shard is idle.
    pub async fn next(&mut self) -> Result<Vec<jetstream::Message>, PullError> {
        let mut batch = if self.busy {
            self.fetch(self.batch_size, None).await?
        } else {
            let mut first = self.fetch(1, Some(IDLE_WAIT)).await?;
            if !first.is_empty() && self.batch_size > 1 {
                tokio::time::sleep(self.linger).await;
                first.extend(self.fetch(self.batch_size - 1, None).await.unwrap_or_default());
            }
            first
        };
        self.busy = batch.len() == self.batch_size;
        batch.sort_by_key(|m| m.info().map(|i| i.stream_sequence).unwrap_or(u64::MAX));
        Ok(batch)
    }

    /// Up to `max` messages: waiting up to `wait` for them, or only what is there now.
    async fn fetch(&self, max: usize, wait: Option<Duration>) -> Result<Vec<jetstream::Message>, PullError> {
        let request = match wait {
            Some(expires) => self.consumer.batch().max_messages(max).expires(expires).messages().await,
            None => self.consumer.fetch().max_messages(max).messages().await,
        };
        let mut stream = request.map_err(|e| PullError(e.to_string()))?;
        let mut got = Vec::with_capacity(max);
        let deadline = tokio::time::Instant::now() + wait.unwrap_or_default() + SLACK;
        loop {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(Ok(m))) => got.push(m),
                // Keep what arrived: dropping delivered messages would strand them until ack_wait.
                Ok(Some(Err(e))) if got.is_empty() => return Err(PullError(e.to_string())),
                Ok(Some(Err(e))) => {
                    tracing::debug!(error = %e, "pull ended early");
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        Ok(got)
    }
}

/// Splits a pulled batch into decoded deliveries and undecodable messages.
pub fn decode<K: CommandKind>(
    kind: &K,
    batch: Vec<jetstream::Message>,
) -> (Vec<Delivery<K::Command>>, Vec<Undecodable>) {
    let mut good = Vec::with_capacity(batch.len());
    let mut bad = Vec::new();
    for message in batch {
        let (seq, delivered) = match message.info() {
            Ok(i) => (i.stream_sequence, i.delivered),
            Err(e) => {
                bad.push(Undecodable { reason: format!("no JetStream metadata: {e}"), message });
                continue;
            }
        };
        match serde_json::from_slice::<K::Command>(&message.payload) {
            Ok(command) => match kind.validate(&command) {
                Ok(()) => good.push(Delivery { message: Some(message), seq, delivered, command }),
                Err(reason) => {
                    bad.push(Undecodable { reason: format!("invalid command: {reason}"), message })
                }
            },
            Err(e) => bad.push(Undecodable { reason: format!("undecodable: {e}"), message }),
        }
    }
    (good, bad)
}
