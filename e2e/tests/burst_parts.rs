//! A sign-up burst spread over several load processes (`loadtest signup-burst
//! --connections-per-process`), as a burst of 100,000 must be where one process may hold
//! 20,000 files: every part holds its share of the connections from its own source
//! address, all start together, and the parent verifies the whole run through the API and
//! Postgres. Against the real api and worker binaries.

use std::process::Command;

use serde_json::Value;
use tps_testkit::{AppProcess, Stack, TEST_JWT_SECRET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_three_load_processes_is_one_consistent_run() {
    let stack = Stack::start().await.unwrap();
    let api = AppProcess::api(&stack, 4, &[]).await.unwrap();
    let _worker = AppProcess::worker(&stack, 4, &[]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("burst.json");
    let loadtest = tps_testkit::binary("loadtest").unwrap();
    let output = Command::new(loadtest)
        .args(["signup-burst", "--base-url", api.url(), "--jwt-secret", TEST_JWT_SECRET])
        .args(["--requests", "300", "--connections-per-process", "100", "--duplicate-share", "0.1"])
        .args(["--settle-timeout", "60s", "--database-url", &stack.database_url])
        .arg("--report")
        .arg(&report_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report["passed"], true, "{report:#}");
    let notes = report["notes"].to_string();
    assert!(notes.contains("over 3 processes"), "{notes}");
    // One phase, the burst itself (no baseline when spread), every sign-up answered 202 once.
    let phases = report["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 1, "{phases:?}");
    assert_eq!(report["facts"]["accepted"], 300, "{}", report["facts"]);
    assert_eq!(report["facts"]["unanswered"], 0);
    let outcomes = &report["facts"]["outcomes"];
    let created = outcomes["CREATED"].as_u64().unwrap_or(0);
    let duplicates = outcomes["REJECTED:DUPLICATE_EMAIL"].as_u64().unwrap_or(0);
    assert_eq!(created + duplicates, 300, "{outcomes}");
    assert!(duplicates > 0, "the duplicate share is refused: {outcomes}");
    // Judged through the API and in Postgres.
    let sources: Vec<&str> =
        report["verdicts"].as_array().unwrap().iter().filter_map(|v| v["source"].as_str()).collect();
    assert!(sources.contains(&"api") && sources.contains(&"postgres"), "{sources:?}");
}
