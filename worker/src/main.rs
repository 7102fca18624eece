//! The `worker` binary: parse config, run until SIGTERM or ctrl-c, exit 0.

/// mimalloc, as in the api (where glibc malloc took about a fifth of the CPU under load):
/// settling batches allocates many small, short-lived rows and buffers too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tps_worker::{CancellationToken, WorkerConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = WorkerConfig::parse();
    tps_runtime::telemetry::init(&config.common.rust_log);
    // OTLP span export (the `otlp` feature and OTEL_EXPORTER_OTLP_ENDPOINT); a no-op otherwise.
    let spans = tps_runtime::spans::install("tps-worker");
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
    let settled = tps_worker::run(config, shutdown).await;
    spans.shutdown().await;
    settled?;
    Ok(())
}
