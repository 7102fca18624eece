//! schemathesis against `/openapi.json` of a real api and worker: every
//! operation is called with generated valid and invalid input, and no answer
//! may be a 5xx. schemathesis (PyPI) is installed on first use into a venv
//! under /var/tmp/tps-tools.

use std::path::{Path, PathBuf};
use std::process::Command;

use tps_testkit::{AppProcess, Stack, token};

const VENV: &str = "/var/tmp/tps-tools/schemathesis";
/// schemathesis 3.x breaks with Hypothesis newer than 6.131.14 ("'many' object has no
/// attribute 'more'", fixed only in 4.x), so both are pinned.
const PACKAGES: [&str; 2] = ["schemathesis==3.39.16", "hypothesis<=6.131.14"];
/// Written after a successful install of exactly [`PACKAGES`].
const MARKER: &str = "tps-installed-3.39.16";

/// The `st` executable, installing it when missing.
fn schemathesis() -> PathBuf {
    let st = Path::new(VENV).join("bin/st");
    if !Path::new(VENV).join(MARKER).exists() {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let venv = Command::new(&python).args(["-m", "venv", VENV]).status().expect("python3 runs");
        assert!(venv.success(), "python3 -m venv {VENV}");
        let pip = Path::new(VENV).join("bin/pip");
        let installed =
            Command::new(pip).args(["install", "--quiet"]).args(PACKAGES).status().expect("pip runs");
        assert!(installed.success(), "pip install {PACKAGES:?}");
        std::fs::write(Path::new(VENV).join(MARKER), "").expect("marker written");
    }
    st
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_generated_request_gets_a_5xx() {
    let st = tokio::task::spawn_blocking(schemathesis).await.unwrap();
    let stack = Stack::start().await.unwrap();
    let api =
        AppProcess::api(&stack, 4, &[("API_RATE_LIMIT_PER_USER", "0"), ("RUST_LOG", "warn")]).await.unwrap();
    let _worker = AppProcess::worker(&stack, 4, &[("RUST_LOG", "warn")]).await.unwrap();
    // An admin token opens every route, so generation reaches the handlers behind auth.
    let auth = format!("Authorization: Bearer {}", token("schemathesis", true));
    let schema = format!("{}/openapi.json", api.url());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .args(["run", &schema, "--checks", "not_a_server_error", "--hypothesis-max-examples", "40"])
            .args(["--hypothesis-deadline", "None", "--request-timeout", "10000", "--no-color", "-H", &auth])
            .args([
                "--hypothesis-suppress-health-check",
                "all",
                "--hypothesis-derandomize",
                "--experimental",
                "openapi-3.1",
            ])
            .output()
            .expect("st runs")
    })
    .await
    .unwrap();
    let report =
        format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    eprintln!("{report}");
    assert!(
        output.status.success(),
        "schemathesis found a 5xx (or could not run):\n{report}\napi log:\n{}",
        api.log_tail()
    );
}
