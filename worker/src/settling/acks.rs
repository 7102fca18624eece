//! Acknowledging a batch: acks after a commit, naks and progress otherwise.
//!
//! These take plain slices (no iterator adapters) so the futures stay `Send`
//! for any lifetime, as `tokio::spawn` needs.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind};

/// Acks every message, without waiting for JetStream to confirm them. The acks leave on
/// the connection in order, ahead of the next pull request, and a lost ack only means a
/// redelivery, which the settled row turns into a no-op: a confirmation (double ack)
/// would buy nothing but a reply message per command on the server and a round trip here.
/// Returns how many could not even be handed to the connection.
pub async fn ack_all(messages: &[&jetstream::Message]) -> usize {
    let mut failed = 0;
    for m in messages {
        failed += usize::from(m.ack().await.is_err());
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
