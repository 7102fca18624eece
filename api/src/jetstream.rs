//! Storing a command in JetStream and waiting for the PubAck, for orders and sign-ups.
//!
//! The PubAck means the stream stored the command (file storage), which is
//! what makes a 202 a promise we can keep.

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, publish::PublishAck};

use crate::telemetry::metrics;

/// The command was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// JetStream refused or the connection failed.
    #[error("jetstream refused the command: {0}")]
    Refused(String),
    /// No PubAck within the bound.
    #[error("no jetstream acknowledgement within {0:?}")]
    Timeout(Duration),
}

/// Publishes `payload` on `subject` with `headers` (the `Nats-Msg-Id` among them) and awaits
/// the PubAck within `timeout`. Latency and failures are counted under `stream` (`orders`, `users`).
pub async fn store(
    js: &jetstream::Context,
    subject: String,
    headers: HeaderMap,
    payload: Vec<u8>,
    timeout: Duration,
    stream: &'static str,
) -> Result<PublishAck, PublishError> {
    let started = Instant::now();
    let send_and_ack = async {
        let ack = js
            .publish_with_headers(subject, headers, payload.into())
            .await
            .map_err(|e| PublishError::Refused(e.to_string()))?;
        ack.await.map_err(|e| PublishError::Refused(e.to_string()))
    };
    let result = match tokio::time::timeout(timeout, send_and_ack).await {
        Ok(result) => result,
        Err(_) => Err(PublishError::Timeout(timeout)),
    };
    let m = metrics();
    m.publish_duration.get(stream).observe(started.elapsed().as_secs_f64());
    if result.is_err() {
        m.publish_failures.get(stream).inc();
    }
    result
}

/// The command stored at `sequence` of `stream`, when a PubAck said `duplicate`
/// (JetStream then reports the sequence of the message it kept), with its headers. `None`
/// when it is gone (settled and removed, or expired), unreadable, or not answered within `bound`.
pub async fn stored_command<T: serde::de::DeserializeOwned>(
    js: &jetstream::Context,
    stream: &str,
    sequence: u64,
    bound: Duration,
) -> Option<(T, HeaderMap)> {
    let read = async {
        let stream = js.get_stream_no_info(stream).await.ok()?;
        let message = stream.get_raw_message(sequence).await.ok()?;
        Some((serde_json::from_slice(&message.payload).ok()?, message.headers))
    };
    tokio::time::timeout(bound, read).await.ok().flatten()
}
