//! Acknowledging a batch: confirmed acks after a commit, naks and progress otherwise.
//!
//! These take plain slices (no iterator adapters) so the futures stay `Send`
//! for any lifetime, as `tokio::spawn` needs.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use futures::stream::FuturesUnordered;

/// Acks in flight at once; a confirmed ack is a round trip each.
const ACK_CONCURRENCY: usize = 64;

/// Acks every message and waits for JetStream to confirm each (double ack).
/// Returns how many were not confirmed: a lost ack only means a redelivery,
/// which the settled row turns into a no-op.
pub async fn ack_all(messages: &[&jetstream::Message]) -> usize {
    let mut failed = 0;
    for chunk in messages.chunks(ACK_CONCURRENCY) {
        let mut acks: FuturesUnordered<_> = chunk.iter().map(|m| m.double_ack()).collect();
        while let Some(result) = acks.next().await {
            failed += usize::from(result.is_err());
        }
    }
    failed
}

/// Hands messages back for redelivery, after `delay` when given.
pub async fn nak_all(messages: &[&jetstream::Message], delay: Option<Duration>) {
    for m in messages {
        if let Err(e) = m.ack_with(AckKind::Nak(delay)).await {
            tracing::debug!(error = %e, "nak not sent; the message will come back after ack_wait");
        }
    }
}

/// Tells JetStream we are still working on these messages (resets `ack_wait`).
pub async fn progress_all(messages: &[&jetstream::Message]) {
    for m in messages {
        let _ = m.ack_with(AckKind::Progress).await;
    }
}
