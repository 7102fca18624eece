//! What the binaries need to run, beside the wire contract (`tps-contract`): their
//! configuration (every variable of CONTRACT.md), Postgres and the migrations, Redis TLS,
//! bearer-token auth, process limits and logging (feature `services`, on by default); the
//! spans of a request and of a settle, exported over OTLP with feature `otlp`; and the
//! Prometheus helpers of `/metrics` (feature `metrics`).

pub mod spans;

#[cfg(feature = "services")]
pub mod auth;
#[cfg(feature = "services")]
pub mod config;
#[cfg(feature = "services")]
pub mod db;
#[cfg(feature = "services")]
pub mod limits;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "services")]
pub mod redis_tls;
#[cfg(feature = "services")]
pub mod telemetry;
