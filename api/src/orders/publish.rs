//! Publishing an order command to JetStream and waiting for the PubAck.
//!
//! The PubAck means the stream stored the command (file storage), which is
//! what makes a 202 a promise we can keep.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, publish::PublishAck};
use tps_contract::OrderCommand;
use tps_contract::subject::{MSG_ID_HEADER, order_subject};
use tps_contract::trace::{TRACEPARENT_HEADER, TraceContext};

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

/// Publishes `cmd` on `orders.<shard>` with `Nats-Msg-Id` = order id and the
/// `traceparent` of the request, and awaits the PubAck.
pub async fn publish(
    js: &jetstream::Context,
    cmd: &OrderCommand,
    shards: u32,
    timeout: Duration,
    trace: &TraceContext,
) -> Result<PublishAck, PublishError> {
    let started = Instant::now();
    let subject = order_subject(tps_contract::shard_for(&cmd.ticket_id, shards));
    let payload = serde_json::to_vec(cmd).map_err(|e| PublishError::Refused(e.to_string()))?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(MSG_ID_HEADER, cmd.order_id.to_string().as_str());
    // The worker's settle continues this trace (W3C traceparent on the message).
    headers.insert(TRACEPARENT_HEADER, trace.header().as_str());
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
    metrics::histogram!("tps_api_publish_duration_seconds", "stream" => "orders").record(started.elapsed().as_secs_f64());
    if result.is_err() {
        metrics::counter!("tps_api_publish_failures_total", "stream" => "orders").increment(1);
    }
    result
}
