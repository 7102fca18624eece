//! The worker's end of the trace: each settled message's `traceparent` (put
//! there by the api) continues as a settle span of the same trace, logged with
//! target `tps_worker::trace` at debug level so that following one order costs
//! nothing unless asked for (`RUST_LOG=info,tps_worker::trace=debug`).

use tps_contract::trace::{TRACEPARENT_HEADER, TraceContext};

use crate::settle::Delivery;

/// The trace context the api put on `message`, if any.
pub fn of_message(message: &async_nats::jetstream::Message) -> Option<TraceContext> {
    let headers = message.headers.as_ref()?;
    TraceContext::parse(headers.get(TRACEPARENT_HEADER)?.as_str())
}

/// Logs the settle span of every traced message of a committed batch.
pub fn settled<C>(stream: &'static str, shard: u32, batch: &[Delivery<C>]) {
    if !tracing::enabled!(target: "tps_worker::trace", tracing::Level::DEBUG) {
        return;
    }
    for d in batch {
        let Some(parent) = of_message(&d.message) else { continue };
        let span = parent.child();
        tracing::debug!(
            target: "tps_worker::trace",
            trace_id = %span.trace_id,
            span_id = %span.span_id,
            parent_span_id = %parent.span_id,
            stream,
            shard,
            seq = d.seq,
            batch = batch.len(),
            "settled"
        );
    }
}
