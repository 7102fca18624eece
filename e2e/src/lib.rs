//! Helpers for end-to-end tests: a fleet of buyers that behave like real clients
//! (retrying 503s and connection errors with the same Idempotency-Key), and the
//! consistency checks every test ends with.

pub mod buyers;
pub mod verdict;

pub use buyers::{Buyers, Outcome, create_ticket};
pub use tps_testkit::Scrape;
pub use verdict::{Ledger, settle_and_check};
