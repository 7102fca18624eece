//! The worker: settles commands from JetStream into Postgres exactly once.
//!
//! Shards are owned one at a time through Redis leases and fenced in Postgres
//! ([`ownership`]: lease, membership, rendezvous, fence). Each owned shard is settled
//! by a runner ([`settling`]: pulled in batches, one transaction per batch, acked
//! after the commit, poison dead-lettered); what a batch does in Postgres is the
//! command kind's ([`orders`], [`users`]). Run one in-process with [`run`] and a
//! [`WorkerConfig`].

pub mod config;
pub mod failpoint;
pub mod http;
pub mod metrics;
pub mod orders;
pub mod ownership;
pub mod redis_link;
pub mod settling;
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
