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

mod app;
pub mod collector;
pub mod ledger;
pub mod metrics;
mod nats;
mod postgres;
mod process;
mod redis;
mod stack;
mod tls;
pub mod verdict;

pub use app::{AppProcess, binary};
pub use collector::{CollectedSpan, FakeCollector};
pub use metrics::Scrape;
pub use nats::Nats;
pub use postgres::Postgres;
pub use process::{ChildProcess, free_port};
pub use redis::Redis;
pub use stack::{Stack, TEST_JWT_SECRET};
pub use tls::TlsFiles;

/// Signs a test token for `user` (admin scope when asked), valid for an hour.
pub fn token(user: &str, admin: bool) -> String {
    tps_runtime::auth::mint(TEST_JWT_SECRET.as_bytes(), user, admin, 3600)
}
