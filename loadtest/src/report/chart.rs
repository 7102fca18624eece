//! The latency-over-time chart: p50, p99 and max per second for each phase, as SVG.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::latency::TimelinePoint;
use crate::report::model::Report;

/// A plotted line: its label and how to read it from a second of the timeline.
type Series = (&'static str, fn(&TimelinePoint) -> f64);

/// Draws the chart to `path`.
pub fn draw(report: &Report, path: &Path) -> Result<()> {
    let seconds =
        report.phases.iter().flat_map(|p| p.timeline.iter().map(|t| t.second)).max().unwrap_or(0) + 1;
    let top =
        report.phases.iter().flat_map(|p| p.timeline.iter().map(|t| t.max_ms)).fold(1.0f64, f64::max) * 1.5;
    let root = SVGBackend::new(path, (1000, 500)).into_drawing_area();
    let chart_err = |e: &dyn std::fmt::Display| Error::Chart(e.to_string());
    root.fill(&WHITE).map_err(|e| chart_err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{}: latency over time (ms, log scale)", report.scenario), ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0u32..seconds, (0.05f64..top).log_scale())
        .map_err(|e| chart_err(&e))?;
    chart
        .configure_mesh()
        .x_desc("second of the phase")
        .y_desc("latency (ms)")
        .draw()
        .map_err(|e| chart_err(&e))?;
    let palette = [[BLUE, CYAN, GREEN], [RED, MAGENTA, BLACK]];
    for (p, colors) in report.phases.iter().rev().zip(palette) {
        let series: [Series; 3] = [("p50", |t| t.p50_ms), ("p99", |t| t.p99_ms), ("max", |t| t.max_ms)];
        for ((label, get), color) in series.into_iter().zip(colors) {
            let points: Vec<(u32, f64)> = p.timeline.iter().map(|t| (t.second, get(t).max(0.05))).collect();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| chart_err(&e))?
                .label(format!("{} {label}", p.name))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| chart_err(&e))?;
    root.present().map_err(|e| chart_err(&e))?;
    Ok(())
}
