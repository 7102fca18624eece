//! `loadtest`: parses the command line, runs one scenario (or `top`), prints the summary,
//! writes the report and chart, and exits non-zero when a consistency check failed.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use tps_loadtest::cli::{Cli, Command, Scenario};
use tps_loadtest::report::{Report, chart, page, table};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    match cli.command {
        Command::Run(scenario) => exit_code(runtime.block_on(run(scenario)).map(|report| report.passed)),
        // `top` only watches; it has no report and no verdict.
        Command::Top(args) => exit_code(runtime.block_on(tps_loadtest::top::run(args)).map(|()| true)),
    }
}

/// 0 passed, 1 a check failed, 2 the run itself failed.
fn exit_code(outcome: anyhow::Result<bool>) -> ExitCode {
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(scenario: Scenario) -> anyhow::Result<Report> {
    let report_path = scenario.report_path();
    let report = tps_loadtest::scenario::run(scenario).await.context("the run failed")?;
    print!("{}", table::render(&report));
    if let Some(path) = report_path {
        write(&report, &path)?;
    }
    Ok(report)
}

fn write(report: &Report, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(report)?)
        .with_context(|| format!("write {}", path.display()))?;
    let svg = path.with_extension("svg");
    chart::draw(report, &svg).with_context(|| format!("draw {}", svg.display()))?;
    let html = path.with_extension("html");
    std::fs::write(&html, page::render(report)).with_context(|| format!("write {}", html.display()))?;
    println!("report: {}\nchart:  {}\npage:   {}", path.display(), svg.display(), html.display());
    Ok(())
}
