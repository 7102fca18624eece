//! The load runner: drives the scenarios of the public contract against any
//! base URL, measures latency like a careful load tool (HdrHistogram, open model
//! corrected for coordinated omission), and verifies afterwards that nothing was
//! lost, duplicated or oversold.

pub mod error;
pub mod http;
pub mod latency;
pub mod load;
pub mod schedule;

pub use error::{Error, Result};
pub mod cli;
pub mod nofile;
pub mod parts;
pub mod procstat;
pub mod report;
pub mod scenario;
pub mod top;
pub mod verify;
pub mod ws;
