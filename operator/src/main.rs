//! The operator binary: parse config, check the CRD, serve health and metrics,
//! win the leader election when asked, reconcile until SIGTERM or ctrl-c.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use clap::Parser;
use kube::Client;
use tokio_util::sync::CancellationToken;
use tps_operator::Context;
use tps_operator::controller::{ensure_crd_installed, run, scoped_api};
use tps_operator::http::{Health, router};
use tps_operator::leader::{self, LeaderElection};
use tps_operator::streams::JetStreamProvisioner;

/// Reconciles ThroughputService resources (throughput.dev/v1alpha1).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "OPERATOR_HTTP_LISTEN", default_value = "0.0.0.0:8080")]
    http_listen: SocketAddr,
    /// Watch only this namespace (all namespaces when unset).
    #[arg(long, env = "WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Leader election: auto (on when --replicas > 1), on or off.
    #[arg(long, env = "LEADER_ELECTION", value_enum, default_value = "auto")]
    leader_election: LeaderElection,
    /// Replicas of the operator Deployment (the chart sets it).
    #[arg(long, env = "OPERATOR_REPLICAS", default_value_t = 1)]
    replicas: u32,
    /// Namespace of the leader Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Identity in the leader Lease (the pod name).
    #[arg(long, env = "POD_NAME", default_value = "tps-operator")]
    identity: String,
    /// Log filter.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // JSON lines when stdout is not a terminal (the pod's log, read by collectors), readable text otherwise.
    let logs = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(&args.log));
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        logs.init()
    } else {
        logs.json().init()
    }
    let metrics = tps_operator::metrics::metrics().registry().clone();

    let client =
        Client::try_default().await.context("no Kubernetes configuration (in-cluster or kubeconfig)")?;
    ensure_crd_installed(&scoped_api(client.clone(), args.watch_namespace.as_deref())).await?;

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let ready = Arc::new(AtomicBool::new(false));
    let listener =
        tokio::net::TcpListener::bind(args.http_listen).await.context("binding the http address")?;
    let server = axum::serve(listener, router(Health { metrics, ready: ready.clone() }))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let server = tokio::spawn(async move { server.await });
    ready.store(true, Ordering::Relaxed);

    let ctx = Arc::new(Context::new(client.clone(), "tps-operator".into(), Arc::new(JetStreamProvisioner)));
    if args.leader_election.enabled(args.replicas) {
        tracing::info!(lease = leader::LEASE_NAME, identity = %args.identity, "waiting for leadership");
        let leadership = tokio::select! {
            held = leader::acquire(client, &args.lease_namespace, &args.identity) => held.context("leader election")?,
            _ = shutdown.cancelled() => return Ok(()),
        };
        tracing::info!("leading; reconciling");
        let watch_lease = tokio::spawn(stop_when_lost(leadership.lost(), shutdown.clone()));
        run(ctx, args.watch_namespace, shutdown.clone().cancelled_owned()).await;
        shutdown.cancel();
        let _ = watch_lease.await;
        leadership.release().await;
    } else {
        run(ctx, args.watch_namespace, shutdown.clone().cancelled_owned()).await;
    }
    // Reconciling stopped (signal or lost lease): stop serving too, so a restart
    // (or the new leader) takes over.
    shutdown.cancel();
    server.await??;
    Ok(())
}

async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing running reconciles");
    token.cancel();
}

/// Stops reconciling when the Lease is lost, so two replicas never both lead.
async fn stop_when_lost(lost: impl std::future::Future<Output = ()>, shutdown: CancellationToken) {
    tokio::select! {
        _ = lost => {
            tracing::warn!("lost the leader Lease; stopping");
            shutdown.cancel();
        }
        _ = shutdown.cancelled() => {}
    }
}
