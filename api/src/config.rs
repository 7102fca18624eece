//! The api's configuration: the shared CONTRACT variables plus a few api knobs,
//! and the `api token` subcommand's arguments.

use std::time::Duration;

use tps_contract::config::{CommonConfig, Secret};

/// Flags and environment of the `api` server.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "api",
    version,
    about = "The HTTP API: accepts orders and sign-ups, makes them durable in JetStream, answers 202.",
    after_help = "Also: `api token USER [--admin] [--ttl SECS]` prints a bearer token signed with AUTH_JWT_SECRET."
)]
pub struct Config {
    /// The variables every binary shares.
    #[command(flatten)]
    pub common: CommonConfig,
    /// How long to wait for JetStream's PubAck before answering 503.
    #[arg(long, env = "API_PUBLISH_TIMEOUT_MS", default_value_t = 2_000)]
    pub publish_timeout_ms: u64,
    /// How long one Redis round trip may take before the request degrades to running without Redis.
    #[arg(long, env = "API_REDIS_TIMEOUT_MS", default_value_t = 250)]
    pub redis_timeout_ms: u64,
    /// How long a PENDING order record and its idempotency claim live in Redis.
    #[arg(long, env = "API_PENDING_TTL_SECS", default_value_t = 24 * 3600)]
    pub pending_ttl_secs: u64,
    /// How often the ticket cache polls Postgres for changed tickets (must stay well under 1 s).
    #[arg(long, env = "API_CACHE_REFRESH_MS", default_value_t = 250)]
    pub cache_refresh_ms: u64,
    /// Batches of events one `/v1/events` client may have waiting; a client that
    /// falls further behind is disconnected so it cannot slow the others.
    #[arg(long, env = "API_EVENTS_BUFFER", default_value_t = 256)]
    pub events_buffer: usize,
    /// Postgres pool size: reads and admin writes only, so it stays small.
    #[arg(long, env = "API_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// Open files (connections) the process may hold: the soft limit is raised to this
    /// at start, as far as the hard limit (or, for root, `fs.nr_open`) allows.
    #[arg(long, env = "API_MAX_OPEN_FILES", default_value_t = 1 << 20)]
    pub max_open_files: u64,
    /// Connections the kernel may queue before `accept` (capped by `net.core.somaxconn`).
    /// A sign-up storm opens tens of thousands at once; the default of 1,024 would drop SYNs.
    #[arg(long, env = "API_LISTEN_BACKLOG", default_value_t = 65_535)]
    pub listen_backlog: u32,
    /// Share `API_LISTEN` with other api processes on this host (`SO_REUSEPORT`): the
    /// kernel spreads new connections over them, as a Service spreads them over pods.
    /// Off by default, so that a second api started by mistake fails to bind instead of
    /// silently taking part of the traffic.
    #[arg(long, env = "API_REUSE_PORT")]
    pub reuse_port: bool,
    /// When set, every token's `aud` must contain it (401 otherwise).
    #[arg(long, env = "AUTH_JWT_AUDIENCE")]
    pub auth_jwt_audience: Option<String>,
    /// When set, every token's `iss` must equal it (401 otherwise).
    #[arg(long, env = "AUTH_JWT_ISSUER")]
    pub auth_jwt_issuer: Option<String>,
    /// Rate limits, the in-flight bound, the request deadline and backpressure.
    #[command(flatten)]
    pub limits: crate::protect::Limits,
}

impl Config {
    /// The JWT key, which the api cannot run without.
    pub fn jwt_secret(&self) -> Option<&Secret> {
        self.common.auth_jwt_secret.as_ref()
    }

    /// [`Config::publish_timeout_ms`] as a duration.
    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }

    /// [`Config::redis_timeout_ms`] as a duration.
    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }
}

/// `api token USER [--admin] [--ttl SECS]`: prints a signed bearer token.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "api token", about = "Prints a bearer token for USER, signed with AUTH_JWT_SECRET.")]
pub struct TokenCommand {
    /// The user id (`sub`).
    pub user: String,
    /// Adds the `admin` scope.
    #[arg(long)]
    pub admin: bool,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 24 * 3600)]
    pub ttl: u64,
    /// HS256 signing key.
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    pub auth_jwt_secret: Secret,
    /// `aud` of the token (the api's AUTH_JWT_AUDIENCE).
    #[arg(long, env = "AUTH_JWT_AUDIENCE")]
    pub audience: Option<String>,
    /// `iss` of the token (the api's AUTH_JWT_ISSUER).
    #[arg(long, env = "AUTH_JWT_ISSUER")]
    pub issuer: Option<String>,
}

impl TokenCommand {
    /// The signed token.
    pub fn mint(&self) -> String {
        let options = tps_contract::auth::MintOptions {
            audience: self.audience.as_deref(),
            issuer: self.issuer.as_deref(),
        };
        tps_contract::auth::mint_with(
            self.auth_jwt_secret.expose().as_bytes(),
            &self.user,
            self.admin,
            self.ttl,
            &options,
        )
    }
}
