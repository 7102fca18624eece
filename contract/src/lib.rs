//! The wire contract between the api, the worker, the operator and the load runner.
//!
//! Everything that crosses a process boundary is defined here exactly once: the
//! commands published to JetStream, the events pushed to clients, the subject and
//! stream names, the W3C trace context carried on messages, the shard function that
//! maps a ticket or a user to a shard, and (behind `streams`) the JetStream stream
//! and consumer configs. What a binary needs to run (config, Postgres and the
//! migrations, auth, limits, logging, spans, metrics) is `tps-runtime`.

pub mod command;
pub mod event;
pub mod shard;
pub mod status;
pub mod subject;
pub mod trace;

#[cfg(feature = "streams")]
pub mod stream_migration;
#[cfg(feature = "streams")]
pub mod streams;

pub use command::{OrderCommand, SignupCommand};
pub use event::{OrderUpdated, TicketUpdated};
pub use shard::shard_for;
pub use status::{OrderReason, OrderStatus, UserReason, UserStatus};
