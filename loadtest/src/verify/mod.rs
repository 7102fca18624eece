//! After the load: wait for everything to settle, read the outcome through the
//! API and Postgres, and judge it.

pub mod ledger;
pub mod poll;
pub mod verdict;

pub use verdict::{OrderTally, Source, TicketTally, UserTally, Verdict, order_verdicts, user_verdicts};
