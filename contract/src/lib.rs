//! The wire contract between the api, the worker, the operator and the load runner.
//!
//! Everything that crosses a process boundary is defined here exactly once: the
//! commands published to JetStream, the events pushed to clients, the subject and
//! stream names, and the shard function that maps a ticket or a user to a shard.

pub mod command;
pub mod event;
pub mod shard;
pub mod spans;
pub mod status;
pub mod subject;
pub mod trace;

#[cfg(feature = "runtime")]
pub mod auth;
#[cfg(feature = "runtime")]
pub mod config;
#[cfg(feature = "runtime")]
pub mod db;
#[cfg(feature = "runtime")]
pub mod limits;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "otlp")]
pub mod otlp;
#[cfg(feature = "runtime")]
pub mod redis_tls;
#[cfg(feature = "streams")]
pub mod stream_migration;
#[cfg(feature = "streams")]
pub mod streams;
#[cfg(feature = "runtime")]
pub mod telemetry;

pub use command::{OrderCommand, SignupCommand};
pub use event::{OrderUpdated, TicketUpdated};
pub use shard::shard_for;
pub use status::{OrderReason, OrderStatus, UserReason, UserStatus};
