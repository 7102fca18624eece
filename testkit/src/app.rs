//! Our own binaries (`api`, `worker`) as real processes, pointed at a [`Stack`].
//!
//! They are found next to the test executable (`target/<profile>/`), so build
//! them first (`scripts/test` does; by hand: `cargo build -p tps-api -p tps-worker`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::Signal;

use crate::process::{ChildProcess, scratch_dir, wait_until};
use crate::stack::Stack;

/// A running `api` or `worker` process.
pub struct AppProcess {
    name: String,
    process: ChildProcess,
    api_url: String,
    metrics_url: String,
    _dir: PathBuf,
}

impl AppProcess {
    /// Starts the `api` binary and waits until `/readyz` answers 200 and so does its own
    /// `/metrics`. With `API_REUSE_PORT` a sibling on the same port may answer `/readyz`
    /// before this process serves; its metrics port is its own, and the api binds it after
    /// its api port.
    pub async fn api(stack: &Stack, shards: u32, extra_env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut app = Self::spawn("api", stack, shards, extra_env)?;
        app.wait_ready(&format!("{}/readyz", app.api_url)).await?;
        let metrics = app.metrics_url.clone();
        app.wait_ready(&metrics).await?;
        Ok(app)
    }

    /// Starts the `worker` binary and waits until its `/healthz` (on METRICS_LISTEN) answers.
    pub async fn worker(stack: &Stack, shards: u32, extra_env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut app = Self::spawn("worker", stack, shards, extra_env)?;
        app.wait_ready(&format!("{}/healthz", app.metrics_base())).await?;
        Ok(app)
    }

    fn spawn(name: &str, stack: &Stack, shards: u32, extra_env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut env = stack.env(shards);
        for (k, v) in extra_env {
            env.retain(|(key, _)| key != k);
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let api_url = format!("http://{}", get("API_LISTEN"));
        let metrics_url = format!("http://{}/metrics", get("METRICS_LISTEN"));
        let dir = scratch_dir(name);
        let mut process =
            ChildProcess::new(name, binary(name)?, &[], dir.join(format!("{name}.log"))).envs(env);
        process.start()?;
        Ok(Self { name: name.to_owned(), process, api_url, metrics_url, _dir: dir })
    }

    async fn wait_ready(&mut self, url: &str) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let url = url.to_owned();
        let ready = wait_until(&self.name, Duration::from_secs(30), || {
            let (client, url) = (client.clone(), url.clone());
            async move { client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        if ready.is_err() || !self.process.is_running() {
            bail!("{} did not become ready; log tail:\n{}", self.name, self.process.log_tail(4000));
        }
        Ok(())
    }

    /// Base URL of the HTTP API (`API_LISTEN`).
    pub fn url(&self) -> &str {
        &self.api_url
    }

    /// URL of `/metrics` (`METRICS_LISTEN`).
    pub fn metrics_url(&self) -> &str {
        &self.metrics_url
    }

    fn metrics_base(&self) -> String {
        self.metrics_url.trim_end_matches("/metrics").to_owned()
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM and wait for a graceful exit; returns the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        self.process.stop_with(Signal::SIGTERM, timeout)
    }

    /// Starts the same binary again with the same environment (same ports).
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.process.start()?;
        let url = if self.name == "api" {
            format!("{}/readyz", self.api_url)
        } else {
            format!("{}/healthz", self.metrics_base())
        };
        self.wait_ready(&url).await
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// The last bytes of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail(4000)
    }
}

/// `target/<profile>/<name>`, found from the running test executable.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("test executable has no parent")?.to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if !path.exists() {
        bail!("{} not found: build it first (cargo build -p tps-{name})", path.display());
    }
    Ok(path)
}
