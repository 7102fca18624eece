//! Publishing an order command on `orders.<shard of its ticket>`.

use std::time::Duration;

use async_nats::jetstream::{self, publish::PublishAck};
use tps_contract::OrderCommand;
use tps_contract::subject::{MSG_ID_HEADER, StreamNames};
use tps_contract::trace::{TRACEPARENT_HEADER, TraceContext};

pub use crate::jetstream::PublishError;

/// Publishes `cmd` on `orders.<shard>` with `Nats-Msg-Id` = order id and the
/// `traceparent` of the request, and awaits the PubAck.
pub async fn publish(
    js: &jetstream::Context,
    cmd: &OrderCommand,
    names: &StreamNames,
    shards: u32,
    timeout: Duration,
    trace: &TraceContext,
) -> Result<PublishAck, PublishError> {
    let subject = names.order_subject(tps_contract::shard_for(&cmd.ticket_id, shards));
    let payload = serde_json::to_vec(cmd).map_err(|e| PublishError::Refused(e.to_string()))?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(MSG_ID_HEADER, cmd.order_id.to_string().as_str());
    // The worker's settle continues this trace (W3C traceparent on the message).
    headers.insert(TRACEPARENT_HEADER, trace.header().as_str());
    crate::jetstream::store(js, subject, headers, payload, timeout, "orders").await
}
