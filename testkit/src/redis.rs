//! A private redis-server that keeps nothing on disk.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::process::{ChildProcess, free_port, scratch_dir, wait_until};
use crate::tls::TlsFiles;

/// redis-server on a free port.
pub struct Redis {
    port: u16,
    dir: PathBuf,
    process: ChildProcess,
    tls: Option<TlsFiles>,
}

impl Redis {
    /// Starts the server and waits for PONG.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(false).await
    }

    /// Starts a server that speaks TLS only (`--tls-port`, plain port off), with a
    /// certificate from a throwaway CA; its URL is `rediss://`, and clients trust
    /// [`Redis::tls`]`.ca_cert` (`REDIS_CA_CERT`). Needs a redis-server built with
    /// TLS (Debian's 7.x is).
    pub async fn start_tls() -> anyhow::Result<Self> {
        Self::start_with(true).await
    }

    async fn start_with(tls: bool) -> anyhow::Result<Self> {
        let port = free_port();
        let dir = scratch_dir("redis");
        let tls = if tls { Some(TlsFiles::generate(&dir.join("tls"))?) } else { None };
        let port_args: Vec<String> = match &tls {
            None => vec!["--port".into(), port.to_string()],
            Some(tls) => vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                tls.server_cert.display().to_string(),
                "--tls-key-file".into(),
                tls.server_key.display().to_string(),
                "--tls-ca-cert-file".into(),
                tls.ca_cert.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
        };
        let args: Vec<String> = [
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
        .chain(port_args)
        .collect();
        let process = ChildProcess::new("redis-server", "redis-server", &args, dir.join("redis.log"));
        let mut redis = Self { port, dir, process, tls };
        redis.start_again().await?;
        Ok(redis)
    }

    /// `redis://127.0.0.1:<port>`, or `rediss://` when TLS is on.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The certificate files when TLS is on.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// (Re)starts on the same port (empty: Redis keeps nothing here).
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.process.start()?;
        let port = self.port;
        if self.tls.is_some() {
            // The TLS port accepts once the server is ready; clients check the rest.
            return wait_until("redis (tls)", Duration::from_secs(10), || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
            })
            .await;
        }
        wait_until("redis", Duration::from_secs(10), || ping(port)).await
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGSTOP: the server keeps its connections and answers nothing (a hung or
    /// partitioned Redis) until [`Redis::resume`].
    pub fn pause(&self) {
        self.process.signal(Signal::SIGSTOP).expect("SIGSTOP redis");
    }

    /// SIGCONT after [`Redis::pause`]: it answers what was sent meanwhile, in order.
    pub fn resume(&self) {
        self.process.signal(Signal::SIGCONT).expect("SIGCONT redis");
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
