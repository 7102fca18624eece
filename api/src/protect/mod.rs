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
pub mod db_health;
pub mod rate_limit;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::client_ip::{self, TrustedProxies};
use crate::config::Limits;
use crate::error::ApiError;
use crate::telemetry::metrics;
pub use backlog::Backlog;
pub use db_health::DbHealth;
pub use rate_limit::RateLimiter;

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

/// What the guard does on a group of routes, besides the body deadline, the in-flight
/// bound and the request deadline that every guarded route gets. Probes are not guarded:
/// they must answer whatever the load, or an orchestrator kills a busy pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Limited per client IP: the routes that take no token (sign-ups, the catalog, the
    /// page, the OpenAPI document). Signed-in routes are limited per user, by the token's
    /// extractor (`crate::auth`).
    per_ip: bool,
    /// Answered 503 at once while Postgres is down (order reads, sign-up reads, admin
    /// writes). The order hot path and the catalog (served from the cache) never are.
    needs_postgres: bool,
    /// New commands shed with 503 while this stream's consumers lag.
    backlog: Option<Stream>,
}

/// The command streams whose lag sheds new commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// ORDERS: new orders.
    Orders,
    /// USERS: new sign-ups.
    Users,
}

impl Policy {
    /// Routes that take no token: limited per client IP.
    pub const ANONYMOUS: Self = Self { per_ip: true, needs_postgres: false, backlog: None };
    /// Routes that take a token: limited per user by its extractor.
    pub const SIGNED_IN: Self = Self { per_ip: false, needs_postgres: false, backlog: None };

    /// Also answered 503 at once while Postgres is down.
    pub const fn needs_postgres(self) -> Self {
        Self { needs_postgres: true, ..self }
    }

    /// Also shed while `stream`'s consumers lag.
    pub const fn sheds_on_backlog(self, stream: Stream) -> Self {
        Self { backlog: Some(stream), ..self }
    }
}

/// The guard's state: the shared protection and the policy of the routes it wraps.
#[derive(Clone)]
struct Guard {
    protection: Arc<Protection>,
    policy: Policy,
}

/// `routes` guarded by [`guard`] under `policy`. Layered per route (after routing), so
/// what a route needs is said where it is declared, not by matching paths here.
pub fn guarded<S: Clone + Send + Sync + 'static>(
    routes: Router<S>,
    protection: &Arc<Protection>,
    policy: Policy,
) -> Router<S> {
    let guard_state = Guard { protection: protection.clone(), policy };
    routes.route_layer(axum::middleware::from_fn_with_state(guard_state, guard))
}

/// `router` with its 404 and 405 answers guarded as anonymous routes: they match no route, so
/// no route's guard reaches them, and a flood of unknown paths is limited per client IP too.
pub fn guard_fallbacks<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    protection: &Arc<Protection>,
) -> Router<S> {
    use axum::handler::Handler;
    let guard_state = Guard { protection: protection.clone(), policy: Policy::ANONYMOUS };
    let layer = axum::middleware::from_fn_with_state(guard_state, guard);
    router
        .fallback((|| async { ApiError::NotFound("route") }).layer(layer.clone()))
        .method_not_allowed_fallback((|| async { ApiError::MethodNotAllowed }).layer(layer))
}

/// The middleware: per-IP limit, body deadline, in-flight bound, Postgres fail-fast,
/// backpressure on new commands, deadline; as the route's [`Policy`] asks.
async fn guard(State(Guard { protection, policy }): State<Guard>, request: Request, next: Next) -> Response {
    if let (true, Some(limiter), Some(ConnectInfo(peer))) =
        (policy.per_ip, &protection.per_ip, request.extensions().get::<ConnectInfo<SocketAddr>>())
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
    if policy.needs_postgres && !protection.db.is_up() {
        metrics().shed.get("postgres_down").inc();
        return ApiError::Unavailable("the database is unavailable; retry shortly".into()).into_response();
    }
    if let Some(stream) = policy.backlog {
        let (backlog, what) = match stream {
            Stream::Orders => (&protection.backlog, "orders"),
            Stream::Users => (&protection.signup_backlog, "sign-ups"),
        };
        if backlog.is_over() {
            metrics().shed.get("consumer_lag").inc();
            let detail = format!("{what} are backlogged ({} unsettled); retry shortly", backlog.lag());
            return ApiError::Unavailable(detail).into_response();
        }
    }
    match tokio::time::timeout(protection.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics().shed.get("deadline").inc();
            ApiError::Unavailable("the request ran out of time; retry shortly".into()).into_response()
        }
    }
}
