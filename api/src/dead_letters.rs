//! Dead letters as the api sees them: read from the DEAD_LETTERS stream, and
//! replayed onto the subject they came from.
//!
//! A dead letter's id is its sequence in DEAD_LETTERS, which is stable and
//! unique for the stream's life. Listing walks the stream with "next message
//! at or after sequence N on `deadletter.>`", so the gaps left by replayed
//! (deleted) letters cost nothing. Replay publishes the original payload with
//! a `Nats-Msg-Id` of its own: the original id would be dropped by JetStream's
//! de-duplication window if the poison came back within two minutes, and the
//! command's order id (the Postgres primary key) keeps the effect exactly once
//! however often it is replayed.
//!
//! A dead letter whose command is already settled in Postgres (the worker stores an
//! order it gives up on as REJECTED `INVALID`) is not replayed: the replay would
//! change nothing, so it is refused with 409 and the letter stays for the record.

use async_nats::jetstream::{self, message::StreamMessage, stream::LastRawMessageErrorKind};
use chrono::{DateTime, Utc};
use tps_contract::subject::{
    DEAD_LETTER_DELIVERIES_HEADER, DEAD_LETTER_MSG_ID_HEADER, DEAD_LETTER_REASON_HEADER,
    DEAD_LETTER_SEQUENCE_HEADER, DEAD_LETTER_SETTLED_HEADER, DEAD_LETTER_STREAM, DEAD_LETTER_STREAM_HEADER,
    DEAD_LETTER_SUBJECT_HEADER, DEAD_LETTER_SUBJECTS, MSG_ID_HEADER, ORDERS_STREAM, StreamNames,
    USERS_STREAM,
};
use tps_contract::{OrderCommand, SignupCommand};

use crate::error::ApiError;
use crate::telemetry::metrics;

/// How much of the payload a listing shows.
pub const PREVIEW_CHARS: usize = 256;

/// One dead letter, decoded from its headers.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Sequence in DEAD_LETTERS.
    pub id: u64,
    /// Why the worker gave up.
    pub reason: String,
    /// Deliveries before it gave up.
    pub delivery_count: u64,
    /// Stream the command came from.
    pub original_stream: String,
    /// Subject the command was published on, and where a replay goes.
    pub original_subject: String,
    /// Sequence of the command in its stream.
    pub original_sequence: u64,
    /// The command's `Nats-Msg-Id` (the order id for orders).
    pub original_msg_id: String,
    /// When it was dead-lettered.
    pub dead_lettered_at: DateTime<Utc>,
    /// How the worker settled the command when it gave up on it (`REJECTED INVALID`), if it could.
    pub settled_as: Option<String>,
    /// The command as published.
    pub payload: bytes::Bytes,
}

impl DeadLetter {
    fn from_message(m: StreamMessage) -> Self {
        let header = |k: &str| m.headers.get(k).map(|v| v.as_str().to_owned()).unwrap_or_default();
        let number = |k: &str| header(k).parse().unwrap_or(0);
        Self {
            id: m.sequence,
            reason: header(DEAD_LETTER_REASON_HEADER),
            delivery_count: number(DEAD_LETTER_DELIVERIES_HEADER),
            original_stream: header(DEAD_LETTER_STREAM_HEADER),
            original_subject: header(DEAD_LETTER_SUBJECT_HEADER),
            original_sequence: number(DEAD_LETTER_SEQUENCE_HEADER),
            original_msg_id: header(DEAD_LETTER_MSG_ID_HEADER),
            settled_as: Some(header(DEAD_LETTER_SETTLED_HEADER)).filter(|s| !s.is_empty()),
            dead_lettered_at: DateTime::from_timestamp(m.time.unix_timestamp(), m.time.nanosecond())
                .unwrap_or_default(),
            payload: m.payload,
        }
    }

    /// The first [`PREVIEW_CHARS`] characters of the payload, lossily as UTF-8.
    pub fn preview(&self) -> String {
        String::from_utf8_lossy(&self.payload).chars().take(PREVIEW_CHARS).collect()
    }
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("dead letters are unreadable: {e}"))
}

async fn stream(
    js: &jetstream::Context,
    names: &StreamNames,
) -> Result<jetstream::stream::Stream<()>, ApiError> {
    js.get_stream_no_info(names.stream(DEAD_LETTER_STREAM)).await.map_err(unavailable)
}

/// The first dead letter at or after sequence `from`, if any.
async fn next_from(
    stream: &jetstream::stream::Stream<()>,
    names: &StreamNames,
    from: u64,
) -> Result<Option<DeadLetter>, ApiError> {
    match stream.get_first_raw_message_by_subject(names.subject(DEAD_LETTER_SUBJECTS), from.max(1)).await {
        Ok(m) => Ok(Some(DeadLetter::from_message(m))),
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(None),
        Err(e) => Err(unavailable(e)),
    }
}

/// Up to `limit` dead letters from sequence `from` on, and the sequence the next page starts at.
pub async fn list(
    js: &jetstream::Context,
    names: &StreamNames,
    from: u64,
    limit: usize,
) -> Result<(Vec<DeadLetter>, Option<u64>), ApiError> {
    let stream = stream(js, names).await?;
    let mut letters = Vec::with_capacity(limit);
    let mut at = from;
    while letters.len() < limit {
        let Some(letter) = next_from(&stream, names, at).await? else {
            return Ok((letters, None));
        };
        at = letter.id + 1;
        letters.push(letter);
    }
    // One look ahead tells whether another page exists.
    let more = next_from(&stream, names, at).await?.is_some();
    Ok((letters, more.then_some(at)))
}

/// The dead letter with this id; 404 when there is none (never was, or replayed).
pub async fn get(js: &jetstream::Context, names: &StreamNames, id: u64) -> Result<DeadLetter, ApiError> {
    let stream = stream(js, names).await?;
    match stream.get_raw_message(id).await {
        Ok(m) => Ok(DeadLetter::from_message(m)),
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {
            Err(ApiError::NotFound("dead letter"))
        }
        Err(e) => Err(unavailable(e)),
    }
}

/// How the letter's command stands in Postgres (`REJECTED INVALID`, `CONFIRMED`,
/// `CREATED`…), or `None` when it is not settled (or the payload is not a command).
pub async fn settled(db: &sqlx::PgPool, letter: &DeadLetter) -> Result<Option<String>, ApiError> {
    let query = match letter.original_stream.as_str() {
        ORDERS_STREAM => match serde_json::from_slice::<OrderCommand>(&letter.payload) {
            Ok(c) => sqlx::query_as::<_, (String, Option<String>)>(
                "SELECT status, reason FROM orders WHERE id = $1",
            )
            .bind(c.order_id),
            Err(_) => return Ok(None),
        },
        USERS_STREAM => match serde_json::from_slice::<SignupCommand>(&letter.payload) {
            Ok(c) => sqlx::query_as::<_, (String, Option<String>)>(
                "SELECT status, reason FROM users WHERE id = $1",
            )
            .bind(c.user.id),
            Err(_) => return Ok(None),
        },
        _ => return Ok(None),
    };
    let row = query
        .fetch_optional(db)
        .await
        .map_err(|e| ApiError::Unavailable(format!("could not check whether the command is settled: {e}")))?;
    Ok(row.map(|(status, reason)| match reason {
        Some(reason) => format!("{status} {reason}"),
        None => status,
    }))
}

/// Publishes the original command to its original subject, waits for the
/// PubAck, then deletes the dead letter. Returns the subject and the new sequence.
/// A command already settled is not replayed (409, the letter stays): see [`settled`].
pub async fn replay(
    js: &jetstream::Context,
    names: &StreamNames,
    db: &sqlx::PgPool,
    id: u64,
) -> Result<(String, u64), ApiError> {
    let letter = get(js, names, id).await?;
    if let Some(outcome) = settled(db, &letter).await? {
        return Err(ApiError::AlreadySettled(format!(
            "dead letter {id}: its command {} is already settled ({outcome}); a replay would change nothing, so nothing was published",
            letter.original_msg_id
        )));
    }
    if letter.original_subject.is_empty() {
        return Err(ApiError::Internal(format!("dead letter {id} has no original subject")));
    }
    let mut headers = async_nats::HeaderMap::new();
    // Two replays of one letter within the window are one publish.
    headers.insert(MSG_ID_HEADER, format!("replay-{id}-{}", letter.original_msg_id).as_str());
    let ack = js
        .publish_with_headers(letter.original_subject.clone(), headers, letter.payload.clone())
        .await
        .map_err(|e| ApiError::Unavailable(format!("the replay could not be stored: {e}")))?
        .await
        .map_err(|e| ApiError::Unavailable(format!("the replay could not be stored: {e}")))?;
    // The command is durable again; a failed delete only leaves a letter that may be replayed once more, harmlessly.
    let stream = stream(js, names).await?;
    if let Err(e) = stream.delete_message(id).await {
        tracing::warn!(id, error = %e, "replayed dead letter not deleted");
    }
    metrics().dead_letters_replayed.inc();
    tracing::info!(id, subject = %letter.original_subject, sequence = ack.sequence, "dead letter replayed");
    Ok((letter.original_subject, ack.sequence))
}
