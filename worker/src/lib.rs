//! The worker: settles commands from JetStream into Postgres exactly once.
//!
//! Shards are owned one at a time through Redis leases (`lease`, `membership`,
//! `rendezvous`, `ownership`) and fenced in Postgres (`fence`). Each owned shard
//! is pulled in batches (`pull`) and settled in one transaction per batch
//! (`settle`, `orders`, `users`), then acked (`acks`) and announced; poison goes to
//! `dead_letter`. Run one in-process with [`run`] and a [`WorkerConfig`].

pub mod acks;
pub mod config;
pub mod dead_letter;
pub mod failpoint;
pub mod fence;
pub mod http;
pub mod lease;
pub mod membership;
pub mod metrics;
pub mod orders;
pub mod ownership;
pub mod pull;
pub mod redis_link;
pub mod rendezvous;
pub mod settle;
pub mod shard;
pub mod trace;
pub mod transient;
pub mod users;
mod worker;

pub use config::WorkerConfig;
pub use tokio_util::sync::CancellationToken;
pub use worker::run;

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A setting is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The migrations failed.
    #[error("migration: {0}")]
    Migrate(String),
    /// NATS could not be set up.
    #[error("nats: {0}")]
    Nats(String),
    /// METRICS_LISTEN could not be bound.
    #[error("listen: {0}")]
    Listen(std::io::Error),
}
