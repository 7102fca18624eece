//! Protection of the api from its own clients: rate limits per user, and per
//! client IP on the anonymous routes (429), a deadline on every request's head
//! (`crate::connections`) and body (408), a bound on requests in flight (503 rather than a queue in
//! which latency collapses: a short, bounded, first-come-first-served wait for
//! a slot, then 503), a deadline on every request, backpressure when
//! the workers lag (503 for new commands), and fail-fast while Postgres is down.
//!
//! Everything answers at once with `Retry-After`, so a well-behaved client
//! backs off and a retry with the same `Idempotency-Key` is always safe.

pub mod backlog;
pub mod body;
pub mod client_ip;
pub mod db_health;
pub mod rate_limit;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry::metrics;
pub use backlog::Backlog;
pub use client_ip::TrustedProxies;
pub use db_health::DbHealth;
pub use rate_limit::RateLimiter;

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

/// The limiters and counters behind [`guard`], shared by every request.
pub struct Protection {
    per_user: Option<RateLimiter<String>>,
    per_ip: Option<RateLimiter<IpAddr>>,
    trusted_proxies: TrustedProxies,
    body_timeout: Duration,
    /// Deadline of a request head and of a connection's idle time (`None`: none).
    pub header_timeout: Option<Duration>,
    /// HTTP/1.1 keep-alive.
    pub keep_alive: bool,
    in_flight: Option<Arc<Semaphore>>,
    queue_timeout: Duration,
    request_timeout: Duration,
    /// The order consumers' lag.
    pub backlog: Arc<Backlog>,
    /// The sign-up consumers' lag.
    pub signup_backlog: Arc<Backlog>,
    /// Whether Postgres answers.
    pub db: Arc<DbHealth>,
}

fn limiter<K: std::hash::Hash + Eq>(per_second: u32) -> Option<RateLimiter<K>> {
    (per_second > 0).then(|| RateLimiter::new(per_second, per_second.saturating_mul(2)))
}

impl Protection {
    /// Limiters as configured.
    pub fn new(limits: &Limits) -> Self {
        Self {
            per_user: limiter(limits.rate_limit_per_user),
            per_ip: limiter(limits.rate_limit_per_ip),
            trusted_proxies: limits.trusted_proxies.clone(),
            body_timeout: Duration::from_millis(limits.body_timeout_ms.max(1)),
            header_timeout: (limits.header_timeout_ms > 0)
                .then(|| Duration::from_millis(limits.header_timeout_ms)),
            keep_alive: limits.keep_alive,
            in_flight: (limits.max_in_flight > 0).then(|| Arc::new(Semaphore::new(limits.max_in_flight))),
            queue_timeout: Duration::from_millis(limits.queue_timeout_ms),
            request_timeout: Duration::from_millis(limits.request_timeout_ms.max(1)),
            backlog: Arc::new(Backlog::new(limits.max_consumer_lag)),
            signup_backlog: Arc::new(Backlog::new(limits.max_consumer_lag)),
            db: Arc::new(DbHealth::default()),
        }
    }

    /// Counts a request of this user; 429 when over the limit.
    pub fn check_user(&self, user: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.per_user else { return Ok(()) };
        limiter.check(user.to_owned()).map_err(|wait| too_many("user", wait))
    }

    /// Forgets keys that have recovered, every 10 s, forever.
    pub async fn sweep_forever(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            self.per_user.iter().for_each(RateLimiter::sweep);
            self.per_ip.iter().for_each(RateLimiter::sweep);
        }
    }
}

fn too_many(whom: &'static str, wait: Duration) -> ApiError {
    metrics().rate_limited.get(whom).inc();
    ApiError::TooManyRequests { whom, retry_after_secs: wait.as_secs() + 1 }
}

/// Probes must answer whatever the load, or an orchestrator kills a busy pod.
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Routes that take no token, and so are limited per client IP: sign-ups, the
/// catalog, the page, the OpenAPI document, and anything unknown. The signed-in
/// routes (orders, events, admin, creating tickets) are limited per user.
pub fn is_anonymous(method: &Method, path: &str) -> bool {
    let signed_in = path.starts_with("/v1/orders")
        || path.starts_with("/v1/events")
        || path.starts_with("/v1/admin")
        || (path == "/v1/tickets" && method == Method::POST);
    !signed_in
}

/// The middleware: per-IP limit, body deadline, in-flight bound, backpressure on new orders and sign-ups, deadline.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if is_probe(request.uri().path()) {
        return next.run(request).await;
    }
    let protection = &state.protection;
    if let (Some(limiter), Some(ConnectInfo(peer))) =
        (&protection.per_ip, request.extensions().get::<ConnectInfo<SocketAddr>>())
        && is_anonymous(request.method(), request.uri().path())
    {
        let client = protection.trusted_proxies.client(peer.ip(), request.headers());
        if let Err(wait) = limiter.check(client_ip::limit_key(client)) {
            return too_many("ip", wait).into_response();
        }
    }
    // The whole body before a slot: a slow sender waits here, holding nothing shared.
    let request = match body::read(request, protection.body_timeout).await {
        Ok(request) => request,
        Err(e) => return e.into_response(),
    };
    let _permit = match &protection.in_flight {
        Some(slots) => match slots.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            // Full: wait in line (the semaphore is fair), within the queue timeout.
            Err(_) => {
                match tokio::time::timeout(protection.queue_timeout, slots.clone().acquire_owned()).await {
                    Ok(Ok(permit)) => {
                        metrics().queued.inc();
                        Some(permit)
                    }
                    _ => {
                        metrics().shed.get("in_flight").inc();
                        return ApiError::Unavailable("too many requests in flight; retry shortly".into())
                            .into_response();
                    }
                }
            }
        },
        None => None,
    };
    if !protection.db.is_up() && db_health::needs_postgres(request.method(), request.uri().path()) {
        metrics().shed.get("postgres_down").inc();
        return ApiError::Unavailable("the database is unavailable; retry shortly".into()).into_response();
    }
    if request.method() == Method::POST
        && request.uri().path() == "/v1/orders"
        && protection.backlog.is_over()
    {
        metrics().shed.get("consumer_lag").inc();
        let detail = format!("orders are backlogged ({} unsettled); retry shortly", protection.backlog.lag());
        return ApiError::Unavailable(detail).into_response();
    }
    if request.method() == Method::POST
        && request.uri().path() == "/v1/users"
        && protection.signup_backlog.is_over()
    {
        metrics().shed.get("consumer_lag").inc();
        let detail =
            format!("sign-ups are backlogged ({} unsettled); retry shortly", protection.signup_backlog.lag());
        return ApiError::Unavailable(detail).into_response();
    }
    match tokio::time::timeout(protection.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics().shed.get("deadline").inc();
            ApiError::Unavailable("the request ran out of time; retry shortly".into()).into_response()
        }
    }
}
