//! A private redis-server that keeps nothing on disk.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::process::{ChildProcess, free_port, scratch_dir, wait_until};

/// redis-server on a free port.
pub struct Redis {
    port: u16,
    dir: PathBuf,
    process: ChildProcess,
}

impl Redis {
    /// Starts the server and waits for PONG.
    pub async fn start() -> anyhow::Result<Self> {
        let port = free_port();
        let dir = scratch_dir("redis");
        let args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir.to_string_lossy(),
            "--daemonize",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let process = ChildProcess::new("redis-server", "redis-server", &args, dir.join("redis.log"));
        let mut redis = Self { port, dir, process };
        redis.start_again().await?;
        Ok(redis)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts on the same port (empty: Redis keeps nothing here).
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.process.start()?;
        let port = self.port;
        wait_until("redis", Duration::from_secs(10), || ping(port)).await
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Graceful stop.
    pub fn stop(&mut self) {
        self.process.stop_with(Signal::SIGTERM, Duration::from_secs(10));
    }
}

async fn ping(port: u16) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return false };
    if s.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    matches!(tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut buf)).await, Ok(Ok(_)))
        && &buf == b"+PONG\r\n"
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.process.kill();
        if std::env::var_os("TPS_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
