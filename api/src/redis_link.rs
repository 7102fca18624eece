//! The one Redis connection of the process, with a fast-failing breaker.
//!
//! Redis is an optimisation here (the 422 check and instant PENDING reads), not
//! the source of exactly-once, so the api must keep serving when it is gone.
//! The connection is made in the background (the api starts without Redis),
//! every call is bounded by a short timeout, and after a failure calls are
//! skipped for a moment instead of each paying the timeout again.
//!
//! The bound is there to tell a **silent** Redis (dead, partitioned, paused) from a
//! live one, not to time a busy pod. When a call passes it while other calls on the
//! link are being answered, Redis is alive and the delay is this pod's own queueing
//! (a saturated runtime reads the replies late): the call is given another bound, up
//! to [`SLOW_CAP`] bounds in all. Failing it would run the request without its
//! claim, and one such request puts every pod's claims in doubt until the backlog
//! is settled (`claims_watch.rs`), which turns sold-out answers into 503s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::telemetry::metrics;

/// How long calls are skipped after a failure.
const BREAKER_OPEN_FOR: Duration = Duration::from_millis(500);

/// The most bounds a call may wait in all while Redis keeps answering other calls.
pub const SLOW_CAP: u32 = 8;

/// Why Redis could not be used for this request.
#[derive(Debug, thiserror::Error)]
pub enum RedisUnavailable {
    /// Not connected yet, or the breaker is open after a recent failure.
    #[error("redis is unavailable")]
    Skipped,
    /// The call did not answer in time.
    #[error("redis timed out")]
    Timeout,
    /// The call failed.
    #[error("redis: {0}")]
    Failed(#[from] redis::RedisError),
}

/// A cloneable handle on the shared [`ConnectionManager`].
#[derive(Clone)]
pub struct RedisLink {
    inner: Arc<Inner>,
}

struct Inner {
    conn: OnceLock<ConnectionManager>,
    timeout: Duration,
    epoch: Instant,
    /// Milliseconds since `epoch` until which calls are skipped.
    open_until_ms: AtomicU64,
    /// Calls Redis has answered (successfully or with a command error): progress on the link.
    answers: AtomicU64,
}

impl RedisLink {
    /// Starts connecting in the background; returns at once.
    pub fn start(
        url: &str,
        ca_cert: Option<&std::path::Path>,
        timeout: Duration,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), redis::RedisError> {
        let client = tps_runtime::redis_tls::client(url, ca_cert)?;
        let link = Self {
            inner: Arc::new(Inner {
                conn: OnceLock::new(),
                timeout,
                epoch: Instant::now(),
                open_until_ms: AtomicU64::new(0),
                answers: AtomicU64::new(0),
            }),
        };
        let inner = link.inner.clone();
        let task = tokio::spawn(async move { connect_forever(client, inner).await });
        Ok((link, task))
    }

    /// Waits up to `wait` for the first connection (used at start, so tests see a warm link).
    pub async fn wait_connected(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while self.inner.conn.get().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.inner.conn.get().is_some()
    }

    /// Runs `call` on the connection under the timeout and the breaker. A call that passes
    /// the timeout while Redis answered other calls meanwhile waits another timeout, up to
    /// [`SLOW_CAP`] in all (see the module doc); one that heard nothing fails and opens the
    /// breaker.
    pub async fn run<T, F, Fut>(&self, call: F) -> Result<T, RedisUnavailable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let inner = &self.inner;
        let Some(conn) = inner.conn.get() else { return Err(RedisUnavailable::Skipped) };
        if self.breaker_open() {
            return Err(RedisUnavailable::Skipped);
        }
        let call = call(conn.clone());
        tokio::pin!(call);
        let mut heard = inner.answers.load(Ordering::Relaxed);
        let mut bounds = 1;
        let result = loop {
            match tokio::time::timeout(inner.timeout, &mut call).await {
                Ok(Ok(value)) => {
                    inner.answers.fetch_add(1, Ordering::Relaxed);
                    return Ok(value);
                }
                Ok(Err(e)) if !is_connection_error(&e) => {
                    inner.answers.fetch_add(1, Ordering::Relaxed);
                    return Err(RedisUnavailable::Failed(e));
                }
                Ok(Err(e)) => break RedisUnavailable::Failed(e),
                Err(_) => {
                    let now_heard = inner.answers.load(Ordering::Relaxed);
                    if now_heard == heard || bounds >= SLOW_CAP {
                        break RedisUnavailable::Timeout;
                    }
                    // Redis answers others: it is alive, and this call waits in our queue.
                    metrics().redis_slow_waits.inc();
                    (heard, bounds) = (now_heard, bounds + 1);
                }
            }
        };
        inner.open_until_ms.store(inner.now_ms() + BREAKER_OPEN_FOR.as_millis() as u64, Ordering::Relaxed);
        Err(result)
    }

    /// Whether calls are being skipped now (the breaker is open after a failure).
    pub fn breaker_open(&self) -> bool {
        self.inner.now_ms() < self.inner.open_until_ms.load(Ordering::Relaxed)
    }

    /// A PING under the timeout, ignoring the breaker (for `/readyz`).
    pub async fn ping(&self) -> Result<(), RedisUnavailable> {
        let Some(conn) = self.inner.conn.get() else { return Err(RedisUnavailable::Skipped) };
        let mut conn = conn.clone();
        match tokio::time::timeout(self.inner.timeout, redis::cmd("PING").query_async::<String>(&mut conn))
            .await
        {
            Ok(Ok(_)) => {
                self.inner.answers.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(RedisUnavailable::Timeout),
        }
    }
}

impl Inner {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// Script errors (a bug) are not a reason to stop using Redis; I/O errors are.
fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

async fn connect_forever(client: redis::Client, inner: Arc<Inner>) {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(inner.timeout.max(Duration::from_millis(500)))
        // The connection's own bound is the longest a call may wait (see [`SLOW_CAP`]).
        .set_response_timeout(inner.timeout * SLOW_CAP)
        .set_max_delay(1_000);
    loop {
        match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
            Ok(conn) => {
                // Once made, the manager reconnects by itself.
                let _ = inner.conn.set(conn);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "redis not reachable yet; serving without it");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
