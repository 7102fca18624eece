//! The `worker` binary: parse config, run until SIGTERM or ctrl-c, exit 0.

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tps_worker::{CancellationToken, WorkerConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = WorkerConfig::parse();
    tps_contract::telemetry::init(&config.common.rust_log);
    let shutdown = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = tokio::signal::ctrl_c() => tracing::info!("ctrl-c: draining"),
        }
        trigger.cancel();
    });
    tps_worker::run(config, shutdown).await?;
    Ok(())
}
