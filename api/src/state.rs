//! The shared state of every handler. `crate::startup` builds it.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tps_contract::subject::StreamNames;

use crate::claim::Record;
use crate::claims_watch::ClaimsWatch;
use crate::events::Hub;
use crate::protect::Protection;
use crate::recall::Batcher;
use crate::redis_link::RedisLink;
use crate::telemetry::ApiMetrics;
use crate::tickets::{SearchCache, TicketCache};

/// Settings the handlers read, fixed at start.
#[derive(Debug)]
pub struct Settings {
    /// Checks bearer tokens: the HS256 key, and the audience and issuer when configured.
    pub tokens: tps_runtime::auth::Verifier,
    /// Shards of the ORDERS stream.
    pub shards: u32,
    /// The names of the streams and subjects (`NATS_STREAM_PREFIX`).
    pub names: StreamNames,
    /// Bound on waiting for a PubAck.
    pub publish_timeout: Duration,
    /// Lifetime of PENDING records and claims in Redis.
    pub pending_ttl_secs: u64,
}

/// Everything a handler needs. Cloned several times per request (every layer and
/// extractor that takes `State`), so a clone is one reference count, not one per
/// handle: cloning the NATS client alone costs a channel-sender clone and drop.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state over `shared`.
    pub(crate) fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The handles behind an [`AppState`].
pub struct Shared {
    /// Postgres: reads and admin writes, never the order hot path.
    pub db: PgPool,
    /// The NATS connection of the requests (the push lane has one of its own for events).
    pub nats: async_nats::Client,
    /// JetStream over that connection.
    pub jetstream: jetstream::Context,
    /// The one Redis connection.
    pub redis: RedisLink,
    /// Tickets by id, kept fresh in the background.
    pub tickets: Arc<TicketCache>,
    /// Cached results of catalog searches.
    pub searches: Arc<SearchCache>,
    /// The open `/v1/events` connections of this pod.
    pub events: Arc<Hub>,
    /// The thread live updates run on (the pump and every WebSocket).
    pub lane: Arc<crate::events::Lane>,
    /// Fixed settings.
    pub settings: Arc<Settings>,
    /// The metrics `/metrics` renders (the process's one catalogue).
    pub metrics: &'static ApiMetrics,
    /// Rate limits, the in-flight bound and the consumer lag.
    pub protection: Arc<Protection>,
    /// Settled orders by id, looked up in micro-batches (a key's answer outlives Redis).
    pub settled_orders: Batcher<Record>,
    /// Settled sign-ups by id, the same way.
    pub settled_signups: Batcher<Record>,
    /// Whether a key without a Redis claim may still have an unsettled order (the epoch marker).
    pub claims: Arc<ClaimsWatch>,
    /// The background tasks that keep the above fresh (held to be aborted on drop).
    pub(crate) _tasks: Tasks,
}

/// Background tasks, aborted when the state is dropped (its last clone).
pub(crate) struct Tasks(pub(crate) Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        self.0.iter().for_each(JoinHandle::abort);
    }
}
