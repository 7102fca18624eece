//! The `api` binary: parse the config, build the state, serve until SIGTERM or ctrl-c.

/// mimalloc: the request path allocates a lot of small, short-lived buffers, and glibc
/// malloc spent about a fifth of the api's CPU on them (perf, flash sale).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use tps_api::{Config, TokenCommand, run, shutdown_signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `api token …` is a helper for scripts/dev; everything else is the server.
    if std::env::args().nth(1).as_deref() == Some("token") {
        let cmd = TokenCommand::parse_from(std::env::args().skip(1));
        println!("{}", cmd.mint());
        return Ok(());
    }
    let config = Config::parse();
    tps_runtime::telemetry::init(&config.common.rust_log);
    // OTLP span export (the `otlp` feature and OTEL_EXPORTER_OTLP_ENDPOINT); a no-op otherwise.
    let spans = tps_runtime::spans::install("tps-api");
    let served = run(config, shutdown_signal()).await;
    spans.shutdown().await;
    served?;
    Ok(())
}
