//! The scenarios of the contract, each a setup, a no-op baseline, the load,
//! and the verification of what it left behind.

pub mod context;
pub mod flash_sale;
pub mod noop;
pub mod orders;
pub mod read_mix;
pub mod setup;
pub mod signup;

use crate::cli::Scenario;
use crate::error::Result;
use crate::report::Report;

/// Runs the chosen scenario to its report.
pub async fn run(scenario: Scenario) -> Result<Report> {
    match scenario {
        Scenario::FlashSale(a) => flash_sale::run(a).await,
        Scenario::SignupBurst(a) => signup::run(a, signup::Mode::Burst).await,
        Scenario::SignupSustained(a) => signup::run(a, signup::Mode::Sustained).await,
        Scenario::ReadMix(a) => read_mix::run(a).await,
    }
}
