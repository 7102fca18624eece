//! JetStream stream and consumer configuration, shared by every binary that
//! creates them (the api and worker for local runs, the operator in clusters).

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use crate::subject::{
    DEAD_LETTER_STREAM, DEAD_LETTER_SUBJECTS, DUPLICATE_WINDOW_SECS, ORDERS_STREAM, ORDERS_SUBJECTS,
    StreamNames, USERS_STREAM, USERS_SUBJECTS,
};

/// Size and durability limits of the command streams.
///
/// The command streams (ORDERS, USERS) use WorkQueue retention: a command leaves the
/// stream when its shard's worker acks it, which it does only after the Postgres commit.
/// So `max_bytes` bounds the *unsettled backlog*, never the history (Postgres is the record).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamLimits {
    /// JetStream replicas (1 locally, 3 in a cluster; `NATS_REPLICAS`).
    pub replicas: usize,
    /// Bytes of unsettled commands a stream may hold before it refuses new ones (-1: no limit).
    /// A full stream makes the api answer 503, never a 202 it cannot keep.
    pub max_bytes: i64,
    /// The longest a command may wait unsettled in a command stream, and how long a dead
    /// letter is kept for inspection and replay.
    pub max_age: Duration,
}

impl StreamLimits {
    /// The defaults with `replicas` replicas (the `NATS_REPLICAS` setting).
    pub fn with_replicas(replicas: usize) -> Self {
        Self { replicas: replicas.max(1), ..Self::default() }
    }
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self { replicas: 1, max_bytes: 8 * 1024 * 1024 * 1024, max_age: Duration::from_secs(7 * 24 * 3600) }
    }
}

fn command_stream(name: String, subjects: String, limits: &StreamLimits) -> stream::Config {
    stream::Config {
        name,
        subjects: vec![subjects],
        // A settled (acked) command is deleted: the stream holds only unsettled work.
        retention: stream::RetentionPolicy::WorkQueue,
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
    named_orders_stream(&StreamNames::default(), limits)
}

/// The USERS stream (`users.<shard>`).
pub fn users_stream(limits: &StreamLimits) -> stream::Config {
    named_users_stream(&StreamNames::default(), limits)
}

/// The ORDERS stream under `names`.
pub fn named_orders_stream(names: &StreamNames, limits: &StreamLimits) -> stream::Config {
    command_stream(names.stream(ORDERS_STREAM), names.subject(ORDERS_SUBJECTS), limits)
}

/// The USERS stream under `names`.
pub fn named_users_stream(names: &StreamNames, limits: &StreamLimits) -> stream::Config {
    command_stream(names.stream(USERS_STREAM), names.subject(USERS_SUBJECTS), limits)
}

/// ORDERS, USERS and DEAD_LETTERS under `names`, in that order.
pub fn named_streams(names: &StreamNames, limits: &StreamLimits) -> [stream::Config; 3] {
    [
        named_orders_stream(names, limits),
        named_users_stream(names, limits),
        named_dead_letter_stream(names, limits),
    ]
}

/// The DEAD_LETTERS stream (`deadletter.<stream>.<shard>`); kept until replayed or expired.
/// It keeps Limits retention: a dead letter is read by the admin routes, never consumed away.
pub fn dead_letter_stream(limits: &StreamLimits) -> stream::Config {
    named_dead_letter_stream(&StreamNames::default(), limits)
}

/// The DEAD_LETTERS stream under `names`.
pub fn named_dead_letter_stream(names: &StreamNames, limits: &StreamLimits) -> stream::Config {
    stream::Config {
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        ..command_stream(names.stream(DEAD_LETTER_STREAM), names.subject(DEAD_LETTER_SUBJECTS), limits)
    }
}

/// The durable pull consumer of one shard: explicit acks, unlimited deliveries
/// (the worker itself dead-letters a message after its own maximum, with a reason).
/// On a WorkQueue stream each subject may have one consumer only: the shard's subject
/// is its filter, so the shards' consumers never overlap.
pub fn shard_consumer(stream: &str, shard: u32) -> consumer::pull::Config {
    named_shard_consumer(&StreamNames::default(), stream, shard)
}

/// The durable pull consumer of one shard of the contract stream `stream`, under `names`.
pub fn named_shard_consumer(names: &StreamNames, stream: &str, shard: u32) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(names.consumer(stream, shard)),
        filter_subject: names.shard_subject(stream, shard),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_deliver: -1,
        max_ack_pending: 20_000,
        deliver_policy: consumer::DeliverPolicy::All,
        ..Default::default()
    }
}

/// Creates the three streams when missing. A command stream left by an older release
/// with Limits retention is migrated to WorkQueue first, keeping every unsettled command
/// (see [`crate::stream_migration`]); a stream with fewer replicas than asked is scaled up.
/// Other settings of existing streams are left as they are.
pub async fn ensure_streams(js: &jetstream::Context, limits: &StreamLimits) -> Result<(), StreamError> {
    ensure_named_streams(js, &StreamNames::default(), limits).await
}

/// [`ensure_streams`] under `names`.
pub async fn ensure_named_streams(
    js: &jetstream::Context,
    names: &StreamNames,
    limits: &StreamLimits,
) -> Result<(), StreamError> {
    for config in [named_orders_stream(names, limits), named_users_stream(names, limits)] {
        crate::stream_migration::ensure_work_queue(js, &config).await?;
        scale_up(js, &config).await?;
    }
    let config = named_dead_letter_stream(names, limits);
    let name = config.name.clone();
    js.get_or_create_stream(config.clone()).await.map_err(|e| StreamError(name, e.to_string()))?;
    scale_up(js, &config).await
}

/// Checks that the streams under `names` exist, creating nothing: what a binary does when
/// the operator owns the streams and their limits (`NATS_STREAMS_CREATE=false`).
pub async fn expect_named_streams(js: &jetstream::Context, names: &StreamNames) -> Result<(), StreamError> {
    for stream in [ORDERS_STREAM, USERS_STREAM, DEAD_LETTER_STREAM] {
        let name = names.stream(stream);
        js.get_stream(&name).await.map_err(|e| StreamError(name.clone(), e.to_string()))?;
    }
    Ok(())
}

/// Raises an existing stream's replicas to `wanted.num_replicas` (a single node grown into
/// a cluster); never lowers them.
async fn scale_up(js: &jetstream::Context, wanted: &stream::Config) -> Result<(), StreamError> {
    let failed = |e: String| StreamError(wanted.name.clone(), e);
    let mut stream = js.get_stream(&wanted.name).await.map_err(|e| failed(e.to_string()))?;
    let current = stream.info().await.map_err(|e| failed(e.to_string()))?.config.clone();
    if current.num_replicas >= wanted.num_replicas {
        return Ok(());
    }
    tracing::info!(stream = %wanted.name, from = current.num_replicas, to = wanted.num_replicas, "scaling stream replicas");
    let config = stream::Config { num_replicas: wanted.num_replicas, ..current };
    js.update_stream(config).await.map(|_| ()).map_err(|e| failed(e.to_string()))
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
    fn command_streams_hold_unsettled_work_only_and_dead_letters_stay() {
        let limits = StreamLimits::default();
        assert_eq!(orders_stream(&limits).retention, stream::RetentionPolicy::WorkQueue);
        assert_eq!(users_stream(&limits).retention, stream::RetentionPolicy::WorkQueue);
        assert_eq!(dead_letter_stream(&limits).retention, stream::RetentionPolicy::Limits);
        assert_eq!(StreamLimits::with_replicas(3).replicas, 3);
        assert_eq!(StreamLimits::with_replicas(0).replicas, 1);
    }

    #[test]
    fn command_streams_refuse_when_full_and_deduplicate() {
        let s = orders_stream(&StreamLimits::default());
        assert_eq!(s.discard, stream::DiscardPolicy::New);
        assert_eq!(s.duplicate_window, Duration::from_secs(DUPLICATE_WINDOW_SECS));
        assert_eq!(s.subjects, vec!["orders.*".to_string()]);
    }

    #[test]
    fn named_streams_and_consumers_carry_the_prefix() {
        let names = StreamNames::with_prefix("shop_a").unwrap();
        let [orders, users, dead] = named_streams(&names, &StreamLimits::default());
        assert_eq!((orders.name.as_str(), orders.subjects[0].as_str()), ("shop_a_ORDERS", "shop_a.orders.*"));
        assert_eq!((users.name.as_str(), users.subjects[0].as_str()), ("shop_a_USERS", "shop_a.users.*"));
        assert_eq!(
            (dead.name.as_str(), dead.subjects[0].as_str()),
            ("shop_a_DEAD_LETTERS", "shop_a.deadletter.>")
        );
        let c = named_shard_consumer(&names, ORDERS_STREAM, 3);
        assert_eq!(
            (c.durable_name.as_deref(), c.filter_subject.as_str()),
            (Some("shop_a_orders-3"), "shop_a.orders.3")
        );
    }
}
