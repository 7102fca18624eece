//! The outcome of a run: the JSON report, the summary table and the chart.

pub mod chart;
pub mod flow;
pub mod model;
pub mod page;
pub mod table;

pub use model::{PhaseReport, Ratio, Report, Settle};
