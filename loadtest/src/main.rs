//! `loadtest`: parses the command line, runs one scenario, prints the summary,
//! writes the report and chart, and exits non-zero when a consistency check failed.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use tps_loadtest::cli::{Cli, Scenario};
use tps_loadtest::report::{Report, chart, page, table};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let cli = match cli.scenario {
        // `top` only watches; it has no report and no verdict.
        Scenario::Top(args) => {
            return exit_code(runtime.block_on(tps_loadtest::top::run(args)).map(|()| true));
        }
        scenario => Cli { scenario },
    };
    exit_code(runtime.block_on(run(cli)).map(|report| report.passed))
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

async fn run(cli: Cli) -> anyhow::Result<Report> {
    let report_path = match &cli.scenario {
        tps_loadtest::cli::Scenario::FlashSale(a) => a.common.report.clone(),
        tps_loadtest::cli::Scenario::SignupBurst(a) | tps_loadtest::cli::Scenario::SignupSustained(a) => {
            a.common.report.clone()
        }
        tps_loadtest::cli::Scenario::ReadMix(a) => a.common.report.clone(),
        Scenario::Top(_) => None,
    };
    let report = tps_loadtest::scenario::run(cli.scenario).await.context("the run failed")?;
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
