//! Dead letters: a message we give up on is copied to DEAD_LETTERS with why,
//! from where and after how many deliveries, and only then acked.
//!
//! The copy keeps the original payload, so the api can replay it onto its
//! original subject; the copy's own `Nats-Msg-Id` is derived from the original
//! stream sequence, so a crash between the copy and the ack never makes two.

use async_nats::HeaderMap;
use async_nats::jetstream::{self, Context};
use tps_contract::subject::{
    DEAD_LETTER_DELIVERIES_HEADER, DEAD_LETTER_MSG_ID_HEADER, DEAD_LETTER_REASON_HEADER,
    DEAD_LETTER_SEQUENCE_HEADER, DEAD_LETTER_SETTLED_HEADER, DEAD_LETTER_STREAM_HEADER,
    DEAD_LETTER_SUBJECT_HEADER, MSG_ID_HEADER, StreamNames,
};

use crate::metrics;

/// The dead letter could not be stored; the original stays unacked.
#[derive(Debug, thiserror::Error)]
#[error("dead letter not stored: {0}")]
pub struct DeadLetterError(pub String);

/// Headers are single-line; a reason may carry a multi-line database message.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(1000).collect()
}

/// Stores `message` in DEAD_LETTERS with `reason` (and, when the worker settled the
/// command as final before giving up on it, how: `settled_as`), then acks the original.
pub async fn dead_letter(
    (js, names): (&Context, &StreamNames),
    stream: &str,
    shard: u32,
    message: &jetstream::Message,
    reason: &str,
    kind: &'static str,
    settled_as: Option<&str>,
) -> Result<(), DeadLetterError> {
    let (seq, delivered) = message.info().map(|i| (i.stream_sequence, i.delivered)).unwrap_or((0, 0));
    // The parsed header is a "standard" name, which a plain &str key would not match.
    let original_id = message
        .headers
        .as_ref()
        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID_HEADER, format!("dl-{}-{seq}", stream.to_ascii_lowercase()).as_str());
    headers.insert(DEAD_LETTER_REASON_HEADER, one_line(reason).as_str());
    headers.insert(DEAD_LETTER_SUBJECT_HEADER, message.subject.as_str());
    headers.insert(DEAD_LETTER_STREAM_HEADER, stream);
    headers.insert(DEAD_LETTER_SEQUENCE_HEADER, seq.to_string().as_str());
    headers.insert(DEAD_LETTER_DELIVERIES_HEADER, delivered.to_string().as_str());
    headers.insert(DEAD_LETTER_MSG_ID_HEADER, original_id.as_str());
    if let Some(settled_as) = settled_as {
        headers.insert(DEAD_LETTER_SETTLED_HEADER, settled_as);
    }
    let ack = js
        .publish_with_headers(names.dead_letter_subject(stream, shard), headers, message.payload.clone())
        .await
        .map_err(|e| DeadLetterError(e.to_string()))?;
    ack.await.map_err(|e| DeadLetterError(e.to_string()))?;
    tracing::warn!(stream, shard, seq, delivered, reason, settled_as, "dead-lettered");
    metrics::dead_lettered(stream, kind);
    // The copy is durable; a lost ack only means the copy is made again and deduplicated.
    if let Err(e) = message.double_ack().await {
        tracing::debug!(error = %e, "ack of a dead-lettered message lost");
    }
    Ok(())
}
