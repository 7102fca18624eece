//! After the load: wait for everything to settle, read the outcome through the
//! API and Postgres, and judge it.

pub mod ledger;
pub mod poll;

// The verdicts and the Postgres tallies they judge are shared with the e2e suites.
pub use tps_testkit::ledger::{TicketDemand, order_tally, user_tally};
pub use tps_testkit::verdict::{
    OrderTally, Source, TicketTally, UserTally, Verdict, order_verdicts, user_verdicts,
};
