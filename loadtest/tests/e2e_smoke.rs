//! A small flash sale against a real stack, when `TPS_E2E_BASE_URL` names one
//! (with `AUTH_JWT_SECRET`, and `DATABASE_URL` to verify Postgres too).
//! Skipped when unset, so the suite runs without a stack.
//!
//!   eval "$(scripts/dev env | sed 's/^/export /')"
//!   TPS_E2E_BASE_URL=$API_URL cargo nextest run -p tps-loadtest e2e

use clap::Parser;
use tps_loadtest::cli::{Cli, Scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_small_flash_sale_against_a_real_stack() {
    let Ok(base) = std::env::var("TPS_E2E_BASE_URL") else {
        eprintln!("TPS_E2E_BASE_URL is unset: skipped");
        return;
    };
    let secret = std::env::var("AUTH_JWT_SECRET").expect("AUTH_JWT_SECRET with TPS_E2E_BASE_URL");
    let mut args = vec![
        "loadtest".to_owned(),
        "flash-sale".into(),
        "--base-url".into(),
        base,
        "--jwt-secret".into(),
        secret,
    ];
    for a in [
        "--requests",
        "5000",
        "--users",
        "500",
        "--tickets",
        "1000",
        "--connections",
        "64",
        "--ws-sample",
        "20",
        "--settle-timeout",
        "60s",
    ] {
        args.push(a.into());
    }
    if let Ok(db) = std::env::var("DATABASE_URL") {
        args.extend(["--database-url".into(), db]);
    }
    let Some(Scenario::FlashSale(a)) = Cli::try_parse_from(args).unwrap().scenario() else { unreachable!() };
    let report = tps_loadtest::scenario::flash_sale::run(a).await.unwrap();
    println!("{}", tps_loadtest::report::table::render(&report));
    assert!(report.passed, "a consistency check failed");
    assert_eq!(report.facts["sold"], 1000, "demand 5x the stock sells it all");
}
