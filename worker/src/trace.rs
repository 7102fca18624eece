//! The worker's end of the trace: each settled message's `traceparent` (put
//! there by the api) continues as a settle span of the same trace. It is logged
//! with target `tps_worker::trace` at debug level, so that following one order
//! costs nothing unless asked for (`RUST_LOG=info,tps_worker::trace=debug`), and
//! exported as an OTLP `settle` span (kind consumer, parent: the api's span) when
//! the `otlp` feature is built in and an endpoint is set (`tps_runtime::spans`).

use std::time::{Instant, SystemTime};

use tps_contract::trace::{TRACEPARENT_HEADER, TraceContext};
use tps_runtime::spans::{self, Span, SpanKind};

use crate::settling::command_kind::Delivery;

/// The trace context the api put on `message`, if any.
pub fn of_message(message: &async_nats::jetstream::Message) -> Option<TraceContext> {
    let headers = message.headers.as_ref()?;
    TraceContext::parse(headers.get(TRACEPARENT_HEADER)?.as_str())
}

/// Logs, and exports, the settle span of every traced message of a committed
/// batch; the span lasts from `started` (the transaction's start) to now.
pub fn settled<C>(stream: &'static str, shard: u32, batch: &[Delivery<C>], started: Instant) {
    let log = tracing::enabled!(target: "tps_worker::trace", tracing::Level::DEBUG);
    // A constant false without the `otlp` feature.
    let export = spans::enabled();
    if !log && !export {
        return;
    }
    let end = SystemTime::now();
    let start = end.checked_sub(started.elapsed()).unwrap_or(end);
    for d in batch {
        let Some(parent) = d.message.as_ref().and_then(of_message) else { continue };
        let span = parent.child();
        if log {
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
        if export {
            spans::export(Span {
                name: "settle",
                kind: SpanKind::Consumer,
                context: span,
                parent_span_id: Some(parent.span_id),
                start,
                end,
                attributes: vec![
                    ("messaging.system", "nats".into()),
                    ("messaging.batch.message_count", batch.len().into()),
                    ("tps.stream", stream.into()),
                    ("tps.shard", shard.into()),
                    ("tps.seq", d.seq.into()),
                    ("tps.delivered", d.delivered.into()),
                ],
            });
        }
    }
}
