//! A small flash sale by the load runner against a real stack: its own (real NATS,
//! Postgres and Redis, and the api and worker binaries), or the one `TPS_E2E_BASE_URL`
//! names (with `AUTH_JWT_SECRET`, and `DATABASE_URL` to verify Postgres too):
//!
//!   eval "$(scripts/dev env | sed 's/^/export /')"
//!   TPS_E2E_BASE_URL=$API_URL cargo nextest run -p tps-loadtest e2e

use clap::Parser;
use tps_loadtest::cli::{Cli, Scenario};
use tps_testkit::{AppProcess, Stack, TEST_JWT_SECRET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_small_flash_sale_against_a_real_stack() {
    let mut own = None;
    let (base, secret, database_url) = match std::env::var("TPS_E2E_BASE_URL") {
        Ok(base) => {
            let secret = std::env::var("AUTH_JWT_SECRET").expect("AUTH_JWT_SECRET with TPS_E2E_BASE_URL");
            (base, secret, std::env::var("DATABASE_URL").ok())
        }
        Err(_) => {
            let stack = Stack::start().await.unwrap();
            let api = AppProcess::api(&stack, 4, &[]).await.unwrap();
            let worker = AppProcess::worker(&stack, 4, &[]).await.unwrap();
            let found = (api.url().to_owned(), TEST_JWT_SECRET.to_owned(), Some(stack.database_url.clone()));
            own = Some((stack, api, worker));
            found
        }
    };
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
    if let Some(db) = database_url {
        args.extend(["--database-url".into(), db]);
    }
    let Some(Scenario::FlashSale(a)) = Cli::try_parse_from(args).unwrap().scenario() else { unreachable!() };
    let report = tps_loadtest::scenario::flash_sale::run(a).await.unwrap();
    println!("{}", tps_loadtest::report::table::render(&report));
    assert!(report.passed, "a consistency check failed");
    assert_eq!(report.facts["sold"], 1000, "demand 5x the stock sells it all");
    assert!(
        report
            .verdicts
            .iter()
            .any(|v| v.check == "oversold" && v.source == tps_loadtest::verify::Source::Postgres),
        "judged in Postgres too"
    );
    drop(own);
}
