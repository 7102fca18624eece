//! The ThroughputService operator: reconciles a `ThroughputService` into an
//! autoscaled api and worker fleet, and provisions its JetStream streams.
//!
//! The reconcile pipeline is `validate → streams → build → prune → apply → status`:
//! `validate`, `build` and `conditions` need no client; `streams`, `prune`,
//! `apply` and the status write do.

pub mod apply;
pub mod build;
pub mod conditions;
pub mod context;
pub mod controller;
pub mod dereference;
pub mod error;
pub mod events;
pub mod failpoint;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod prune;
pub mod reconcile;
pub mod resource;
pub mod streams;
pub mod validate;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod mock;
#[cfg(test)]
mod scenarios;

pub use context::Context;
pub use error::{Error, Result};
pub use resource::{ThroughputService, ThroughputServiceSpec, ThroughputServiceStatus};
