//! The api's configuration: the shared CONTRACT variables plus a few api knobs,
//! and the `api token` subcommand's arguments.

use std::time::Duration;

use tps_runtime::config::{CommonConfig, Secret};

use crate::client_ip::TrustedProxies;

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
    /// How long one Redis round trip may take before the request degrades to running without
    /// Redis, when Redis answers nothing meanwhile; while it answers other calls (a busy pod
    /// reads replies late), a call may wait up to 8 of these.
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
    pub limits: Limits,
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
        let options = tps_runtime::auth::MintOptions {
            audience: self.audience.as_deref(),
            issuer: self.issuer.as_deref(),
        };
        tps_runtime::auth::mint_with(
            self.auth_jwt_secret.expose().as_bytes(),
            &self.user,
            self.admin,
            self.ttl,
            &options,
        )
    }
}

/// The limits, from flags or environment. 0 turns a limit off.
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Sustained requests a second per user (token `sub`); bursts of twice that pass.
    #[arg(long, env = "API_RATE_LIMIT_PER_USER", default_value_t = 50)]
    pub rate_limit_per_user: u32,
    /// Sustained requests a second per client IP on the anonymous routes (sign-ups, the
    /// catalog, the page, the OpenAPI document); bursts of twice that pass. Signed-in
    /// routes are limited per user instead. The client IP is the TCP peer, or what a
    /// proxy in `API_TRUSTED_PROXIES` put in `X-Forwarded-For`; IPv6 counts per /64.
    /// 0 turns it off (a load runner on loopback is one host: `scripts/dev` and the
    /// test stacks do).
    #[arg(long, env = "API_RATE_LIMIT_PER_IP", default_value_t = 100)]
    pub rate_limit_per_ip: u32,
    /// Comma-separated CIDRs (or addresses) of the proxies whose `X-Forwarded-For` is
    /// believed, e.g. the ingress controllers' pod network `10.0.0.0/8`. Empty: nobody's;
    /// the client is always the TCP peer.
    #[arg(long, env = "API_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: TrustedProxies,
    /// Time a client has to send a request's head (line and headers) once the server
    /// waits for it; also the keep-alive idle timeout, since the wait starts when a
    /// connection goes idle. Past it the connection is closed. 0: no deadline.
    #[arg(long, env = "API_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// Time a client has to send a request's body once its head arrived; past it 408
    /// and the connection is closed. The body is read before the request takes an
    /// in-flight slot, so a slow sender never holds one.
    #[arg(long, env = "API_BODY_TIMEOUT_MS", default_value_t = 5_000)]
    pub body_timeout_ms: u64,
    /// Whether connections stay open between requests (HTTP/1.1 keep-alive).
    #[arg(long, env = "API_KEEP_ALIVE", default_value_t = true, action = clap::ArgAction::Set)]
    pub keep_alive: bool,
    /// Live `/v1/events` connections (WebSocket and SSE together) one user may hold on one
    /// pod; one more gets 429 with `Retry-After`. 0: no cap.
    #[arg(long, env = "API_EVENTS_MAX_PER_USER", default_value_t = 8)]
    pub events_max_per_user: usize,
    /// Live `/v1/events` connections one pod holds; one more gets 429 with `Retry-After`
    /// (an autoscaler adds pods; a client retries on another). 0: no cap.
    #[arg(long, env = "API_EVENTS_MAX_PER_POD", default_value_t = 20_000)]
    pub events_max_per_pod: usize,
    /// Ids that Postgres did not know, remembered (for 1 s each) so that asking again
    /// costs nothing; beyond this many the oldest are forgotten.
    #[arg(long, env = "API_UNKNOWN_TICKETS_MAX", default_value_t = 10_000)]
    pub unknown_tickets_max: usize,
    /// Requests served at once. Beyond it a request waits for a slot, first come first
    /// served, for at most `API_QUEUE_TIMEOUT_MS`, then gets 503. A waiting request has
    /// not had its body read: it costs its connection and its head, little more.
    #[arg(long, env = "API_MAX_IN_FLIGHT", default_value_t = 4_096)]
    pub max_in_flight: usize,
    /// How long a request may wait for a slot when `API_MAX_IN_FLIGHT` are being served
    /// (0: no waiting, 503 at once). A burst of sign-ups queues here instead of being shed.
    #[arg(long, env = "API_QUEUE_TIMEOUT_MS", default_value_t = 5_000)]
    pub queue_timeout_ms: u64,
    /// Deadline of a whole request; past it the client gets 503 (outbound calls have their own, shorter, bounds).
    #[arg(long, env = "API_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Unacked commands of one stream (summed over its shard consumers) beyond which new
    /// orders (ORDERS) or sign-ups (USERS) get 503.
    #[arg(long, env = "API_MAX_CONSUMER_LAG", default_value_t = 1_000_000)]
    pub max_consumer_lag: u64,
    /// How often the consumer lag is measured.
    #[arg(long, env = "API_LAG_POLL_MS", default_value_t = 1_000)]
    pub lag_poll_ms: u64,
    /// How often Postgres is probed; while a probe fails, routes that need it get 503 at once.
    #[arg(long, env = "API_DB_PROBE_MS", default_value_t = 500)]
    pub db_probe_ms: u64,
}
