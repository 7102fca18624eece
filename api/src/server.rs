//! Binding the listeners, serving, and shutting down gracefully.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

use crate::config::Config;
use crate::connections;
use crate::routes;
use crate::startup::{self, StartError};
use crate::state::AppState;

/// A started api: state built, both listeners bound, not yet serving.
pub struct Server {
    state: AppState,
    api: TcpListener,
    metrics: TcpListener,
}

impl Server {
    /// Builds the state and binds `API_LISTEN` and `METRICS_LISTEN` (port 0 picks a free port).
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        match tps_runtime::limits::raise_nofile(config.max_open_files) {
            Ok(limit) => tracing::info!(limit, "open-file limit"),
            Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
        }
        let state = startup::connect(config).await?;
        let api = listen(config.common.api_listen, config.listen_backlog, config.reuse_port)?;
        let metrics = TcpListener::bind(config.common.metrics_listen).await?;
        Ok(Self { state, api, metrics })
    }

    /// Where the API listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.api.local_addr().expect("a bound listener has an address")
    }

    /// Where `/metrics` listens.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics.local_addr().expect("a bound listener has an address")
    }

    /// The state, for tests that want to look inside.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics = axum::serve(self.metrics, routes::metrics_app(self.state.clone()))
            .with_graceful_shutdown(async move {
                let _ = metrics_stopped.await;
            });
        let metrics = tokio::spawn(async move { metrics.await });
        tracing::info!(addr = %self.api.local_addr()?, "api listening");
        // Live-update streams never end by themselves; close them so the drain can finish.
        let hub = self.state.events.clone();
        let goodbyes = self.state.events.clone();
        let shutdown = async move {
            shutdown.await;
            hub.close_all();
        };
        let edges = &self.state.protection;
        let http = connections::Http::new(edges.header_timeout, edges.keep_alive);
        let app = routes::app(self.state);
        connections::serve(self.api, app, http, shutdown).await;
        // A WebSocket left hyper at its upgrade, so the drain did not wait for it: give each
        // one the time to send its close frame (1001), or a process exiting now would cut it.
        if !goodbyes.all_ended(WEBSOCKET_GOODBYE).await {
            tracing::warn!(left = goodbyes.len(), "live-update connections still open at exit");
        }
        let _ = stop_metrics.send(());
        let _ = metrics.await;
        tracing::info!("api stopped");
        Ok(())
    }
}

/// How long a stopping api waits, after the drain, for its WebSockets to say goodbye (each
/// gives up on a client that does not take its close frame within 1 s).
pub const WEBSOCKET_GOODBYE: std::time::Duration = std::time::Duration::from_secs(2);

/// Binds `addr` with a listen backlog of `backlog` (tokio's `bind` fixes it at 1,024),
/// sharing the port with other processes when `reuse_port` ([`Config::reuse_port`]).
fn listen(addr: SocketAddr, backlog: u32, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // A restarted pod rebinds at once, whatever is left in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    if reuse_port {
        // Each process gets its own accept queue; the kernel hashes connections over them.
        socket.set_reuseport(true)?;
    }
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Builds the state, binds both listeners and serves until `shutdown`.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    Server::bind(&config).await?.serve(shutdown).await
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; draining");
}
