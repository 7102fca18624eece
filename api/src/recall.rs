//! What Postgres remembers of a key: the settled order by its derived id, the
//! settled sign-up by its id, looked up in micro-batches.
//!
//! A Redis claim answers replays and conflicts while it lives, but Redis may
//! lose it (a restart without persistence, a failover, `FLUSHALL`) and the claim
//! expires after `--pending-ttl-secs`. The answer for a key must not end with
//! it, so every request whose key has no claim (a brand-new claim, or Redis
//! unreachable) also asks Postgres, which holds every settled order and sign-up
//! for ever.
//!
//! That is one lookup per brand-new key, on the hot path. It stays cheap:
//! - it runs concurrently with the JetStream publish (the route joins both), so
//!   it adds no latency unless Postgres is slower than the PubAck;
//! - lookups are micro-batched: one task takes every lookup waiting in its
//!   queue and asks for all of them in one `WHERE id = ANY($1)` on the primary
//!   key. No timer: while a statement runs, new lookups queue up and leave
//!   together in the next one, so the batch grows with the load and a lone
//!   request goes out at once. One statement at a time ([`MAX_IN_FLIGHT`]): with
//!   four, a 200,000-request flash sale asked in batches of 17 on average, and
//!   Postgres spent nearly as much CPU on these lookups as on settling the
//!   orders (each statement is also two pool pings and a plan). One at a time,
//!   the same sale's 220,000 lookups went out in about 2,600 statements, and the
//!   api answered as fast as before (BENCHMARKS.md).
//! - while the background probe says Postgres is down, a lookup fails at once
//!   instead of waiting out the pool's acquire timeout.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgPool, Row};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::claim::Record;
use crate::protect::db_health::DbHealth;
use crate::telemetry::metrics;

/// Lookups asked in one statement at most.
pub const MAX_BATCH: usize = 512;
/// Statements in flight at once (pool connections used by lookups): one, so that every
/// lookup that arrives while it runs leaves in the next.
pub const MAX_IN_FLIGHT: usize = 1;
/// Lookups that may wait for a statement; beyond, a lookup fails (and the request
/// is answered as without Postgres) rather than queueing without bound.
const QUEUE: usize = 16_384;

/// Why Postgres could not say.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecallError {
    /// The background probe says Postgres is down.
    #[error("postgres is down")]
    Down,
    /// The query failed.
    #[error("postgres: {0}")]
    Failed(String),
    /// No answer within the bound.
    #[error("no answer from postgres within the bound")]
    Timeout,
    /// Too many lookups waiting.
    #[error("too many lookups waiting")]
    Busy,
}

type Reply<V> = oneshot::Sender<Result<Option<V>, RecallError>>;

/// A micro-batching lookup of rows by uuid primary key.
pub struct Batcher<V> {
    tx: mpsc::Sender<(Uuid, Reply<V>)>,
    health: Arc<DbHealth>,
}

impl<V: Clone + Send + 'static> Batcher<V> {
    /// Starts the batching task; `query` fetches the rows of a set of ids.
    pub fn start<F, Fut>(db: PgPool, health: Arc<DbHealth>, query: F) -> (Self, JoinHandle<()>)
    where
        F: Fn(PgPool, Vec<Uuid>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<HashMap<Uuid, V>, sqlx::Error>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<(Uuid, Reply<V>)>(QUEUE);
        let query = Arc::new(query);
        let task = tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
            while let Some(first) = rx.recv().await {
                // Waiting for a slot is what lets a batch grow under load.
                let Ok(slot) = slots.clone().acquire_owned().await else { return };
                let mut asks = vec![first];
                while asks.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(ask) => asks.push(ask),
                        Err(_) => break,
                    }
                }
                let (db, query) = (db.clone(), query.clone());
                tokio::spawn(async move {
                    metrics().recall_batch_size.observe(asks.len() as f64);
                    let ids: Vec<Uuid> = asks.iter().map(|(id, _)| *id).collect();
                    let found = query(db, ids).await;
                    drop(slot);
                    match found {
                        Ok(rows) => {
                            for (id, reply) in asks {
                                let _ = reply.send(Ok(rows.get(&id).cloned()));
                            }
                        }
                        Err(e) => {
                            let e = RecallError::Failed(e.to_string());
                            for (_, reply) in asks {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
                    }
                });
            }
        });
        (Self { tx, health }, task)
    }

    /// The row of `id`, if Postgres has one; answers within `bound`.
    pub async fn get(&self, id: Uuid, bound: Duration) -> Result<Option<V>, RecallError> {
        if !self.health.is_up() {
            return Err(RecallError::Down);
        }
        let (reply, answer) = oneshot::channel();
        self.tx.try_send((id, reply)).map_err(|_| RecallError::Busy)?;
        match tokio::time::timeout(bound, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(RecallError::Failed("the lookup was dropped".into())),
            Err(_) => Err(RecallError::Timeout),
        }
    }
}

/// Settled orders of `ids`, as the claims they were accepted with.
pub async fn orders(db: PgPool, ids: Vec<Uuid>) -> Result<HashMap<Uuid, Record>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT id, user_id, ticket_id, quantity, created_at FROM orders WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&db)
            .await?;
    rows.iter()
        .map(|r| {
            let quantity: i32 = r.try_get("quantity")?;
            let created: chrono::DateTime<chrono::Utc> = r.try_get("created_at")?;
            let user: String = r.try_get("user_id")?;
            let ticket: Uuid = r.try_get("ticket_id")?;
            let record = crate::orders::claim::record(
                &user,
                &ticket,
                quantity.max(0) as u32,
                created.timestamp_millis(),
            );
            Ok((r.try_get("id")?, record))
        })
        .collect()
}

/// Settled sign-ups of `ids`, as the claims they were accepted with (the worker stores the
/// fingerprint it settled, `Signup::fingerprint`, the function the api claims with).
pub async fn signups(db: PgPool, ids: Vec<Uuid>) -> Result<HashMap<Uuid, Record>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, fingerprint, created_at FROM users WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_all(&db)
        .await?;
    rows.iter()
        .map(|r| {
            let created: chrono::DateTime<chrono::Utc> = r.try_get("created_at")?;
            let record = crate::users::claim::record(r.try_get("fingerprint")?, created.timestamp_millis());
            Ok((r.try_get("id")?, record))
        })
        .collect()
}

/// What Postgres said about a key, for the metric.
pub fn count(kind: &'static str, outcome: &'static str) {
    metrics().idempotency_recalls.with_label_values(&[kind, outcome]).inc();
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use sqlx::postgres::PgPoolOptions;

    use super::*;

    #[tokio::test]
    async fn lookups_that_arrive_during_a_statement_leave_together_in_the_next() {
        // Never connects: the query below stands in for Postgres and records each statement.
        let db = PgPoolOptions::new().connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
        let statements = Arc::new(Mutex::new(Vec::new()));
        let seen = statements.clone();
        let (batcher, _task) =
            Batcher::start(db, Arc::new(DbHealth::default()), move |_db, ids: Vec<Uuid>| {
                seen.lock().unwrap().push(ids.len());
                async move {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    // Every id ending in an even byte is "settled".
                    Ok(ids
                        .into_iter()
                        .filter(|id| id.as_bytes()[15] % 2 == 0)
                        .map(|id| (id, id.as_u128()))
                        .collect())
                }
            });
        let batcher = Arc::new(batcher);
        let bound = Duration::from_secs(5);
        let lone = Uuid::from_u128(2);
        let first = tokio::spawn({
            let b = batcher.clone();
            async move { b.get(lone, bound).await }
        });
        // Three waves while the first statement runs (it takes 500 ms: a wide margin for a loaded host).
        let mut asks = Vec::new();
        for wave in 0..3u128 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            asks.extend((0..33u128).map(|i| {
                let (b, n) = (batcher.clone(), 10 + wave * 33 + i);
                tokio::spawn(async move { (n, b.get(Uuid::from_u128(n), bound).await) })
            }));
        }
        assert_eq!(first.await.unwrap().unwrap(), Some(2), "a lone lookup goes out at once");
        for ask in asks {
            let (n, answer) = ask.await.unwrap();
            assert_eq!(answer.unwrap(), (n % 2 == 0).then_some(n), "each lookup gets its own row");
        }
        assert_eq!(
            *statements.lock().unwrap(),
            [1, 99],
            "the three waves that came during the first statement, as one"
        );
    }
}
