//! Real servers for tests: NATS with JetStream, Postgres and Redis, each on a
//! free loopback port with its data in a private temporary folder.
//!
//! Every server is a child process that tests may kill, stop gracefully and
//! start again on the same port and data, to inject faults. Children receive
//! SIGKILL when the test process dies (`PR_SET_PDEATHSIG`), so a crashed test
//! never leaves servers behind. Nothing here uses servers already running on
//! the machine.
//!
//! Also the one copy of each tool the suites and the load runner share: the
//! consistency verdicts ([`verdict`]) and the Postgres tallies they judge
//! ([`ledger`]), the Prometheus text parser ([`metrics`]) and a fake OTLP
//! collector ([`collector`]).

pub mod ledger;
pub mod metrics;
pub mod verdict;

#[cfg(feature = "servers")]
mod app;
#[cfg(feature = "servers")]
pub mod collector;
#[cfg(feature = "servers")]
mod nats;
#[cfg(feature = "servers")]
mod postgres;
#[cfg(feature = "servers")]
mod process;
#[cfg(feature = "servers")]
mod redis;
#[cfg(feature = "servers")]
mod stack;
#[cfg(feature = "servers")]
mod tls;

#[cfg(feature = "servers")]
pub use app::{AppProcess, binary};
#[cfg(feature = "servers")]
pub use collector::{CollectedSpan, FakeCollector};
pub use metrics::Scrape;
#[cfg(feature = "servers")]
pub use nats::Nats;
#[cfg(feature = "servers")]
pub use postgres::Postgres;
#[cfg(feature = "servers")]
pub use process::{ChildProcess, free_port};
#[cfg(feature = "servers")]
pub use redis::Redis;
#[cfg(feature = "servers")]
pub use stack::{Stack, TEST_JWT_SECRET};
#[cfg(feature = "servers")]
pub use tls::TlsFiles;

/// Signs a test token for `user` (admin scope when asked), valid for an hour.
#[cfg(feature = "servers")]
pub fn token(user: &str, admin: bool) -> String {
    tps_runtime::auth::mint(TEST_JWT_SECRET.as_bytes(), user, admin, 3600)
}
