//! JetStream stream and consumer configuration, shared by every binary that
//! creates them (the api and worker for local runs, the operator in clusters).

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use crate::subject::{
    DEAD_LETTER_STREAM, DEAD_LETTER_SUBJECTS, DUPLICATE_WINDOW_SECS, ORDERS_STREAM, ORDERS_SUBJECTS,
    USERS_STREAM, USERS_SUBJECTS, consumer_name,
};

/// Size and durability limits of the command streams.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamLimits {
    /// JetStream replicas (1 locally, 3 in a cluster).
    pub replicas: usize,
    /// Bytes a command stream may hold before it refuses new commands (-1: no limit).
    /// A full stream makes the api answer 503, never a 202 it cannot keep.
    pub max_bytes: i64,
    /// How long settled commands are kept for audit and replay.
    pub max_age: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self { replicas: 1, max_bytes: 8 * 1024 * 1024 * 1024, max_age: Duration::from_secs(7 * 24 * 3600) }
    }
}

fn command_stream(name: &str, subjects: &str, limits: &StreamLimits) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![subjects.to_owned()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        num_replicas: limits.replicas,
        max_bytes: limits.max_bytes,
        max_age: limits.max_age,
        // Refuse rather than silently drop the oldest unprocessed command.
        discard: stream::DiscardPolicy::New,
        duplicate_window: Duration::from_secs(DUPLICATE_WINDOW_SECS),
        ..Default::default()
    }
}

/// The ORDERS stream (`orders.<shard>`).
pub fn orders_stream(limits: &StreamLimits) -> stream::Config {
    command_stream(ORDERS_STREAM, ORDERS_SUBJECTS, limits)
}

/// The USERS stream (`users.<shard>`).
pub fn users_stream(limits: &StreamLimits) -> stream::Config {
    command_stream(USERS_STREAM, USERS_SUBJECTS, limits)
}

/// The DEAD_LETTERS stream (`deadletter.<stream>.<shard>`); kept until replayed or expired.
pub fn dead_letter_stream(limits: &StreamLimits) -> stream::Config {
    stream::Config {
        discard: stream::DiscardPolicy::Old,
        ..command_stream(DEAD_LETTER_STREAM, DEAD_LETTER_SUBJECTS, limits)
    }
}

/// The durable pull consumer of one shard: explicit acks, unlimited deliveries
/// (the worker itself dead-letters a message after its own maximum, with a reason).
pub fn shard_consumer(stream: &str, shard: u32) -> consumer::pull::Config {
    let subject_prefix = stream.to_ascii_lowercase();
    consumer::pull::Config {
        durable_name: Some(consumer_name(stream, shard)),
        filter_subject: format!("{subject_prefix}.{shard}"),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_deliver: -1,
        max_ack_pending: 20_000,
        deliver_policy: consumer::DeliverPolicy::All,
        ..Default::default()
    }
}

/// Creates the three streams when missing; leaves existing ones as they are.
pub async fn ensure_streams(js: &jetstream::Context, limits: &StreamLimits) -> Result<(), StreamError> {
    for config in [orders_stream(limits), users_stream(limits), dead_letter_stream(limits)] {
        let name = config.name.clone();
        js.get_or_create_stream(config).await.map_err(|e| StreamError(name, e.to_string()))?;
    }
    Ok(())
}

/// A stream could not be created or read.
#[derive(Debug, thiserror::Error)]
#[error("stream {0}: {1}")]
pub struct StreamError(pub String, pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumers_filter_their_own_shard() {
        let c = shard_consumer(ORDERS_STREAM, 3);
        assert_eq!(c.durable_name.as_deref(), Some("orders-3"));
        assert_eq!(c.filter_subject, "orders.3");
        let c = shard_consumer(USERS_STREAM, 0);
        assert_eq!(c.filter_subject, "users.0");
    }

    #[test]
    fn command_streams_refuse_when_full_and_deduplicate() {
        let s = orders_stream(&StreamLimits::default());
        assert_eq!(s.discard, stream::DiscardPolicy::New);
        assert_eq!(s.duplicate_window, Duration::from_secs(DUPLICATE_WINDOW_SECS));
        assert_eq!(s.subjects, vec!["orders.*".to_string()]);
    }
}
