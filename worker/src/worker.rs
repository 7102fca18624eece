//! Starting a worker: connect (waiting for servers that are not up yet),
//! migrate, ensure streams and consumers, serve probes, then own shards until
//! shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;
use tps_contract::streams::{StreamLimits, ensure_named_streams, expect_named_streams, named_shard_consumer};
use tps_contract::subject::StreamNames;

use crate::config::WorkerConfig;
use crate::failpoint::Failpoint;
use crate::orders::Orders;
use crate::ownership::Ownership;
use crate::ownership::lease::LeaseTable;
use crate::ownership::membership::Membership;
use crate::redis_link::RedisLink;
use crate::settling::command_kind::CommandKind;
use crate::settling::runner::SettleContext;
use crate::transient::backoff;
use crate::users::Users;
use crate::{WorkerError, http, metrics};

/// Runs a worker (orders and sign-ups) until `shutdown` is cancelled, then drains and returns.
/// Returns early only on a configuration error or a failed migration.
pub async fn run(config: WorkerConfig, shutdown: CancellationToken) -> Result<(), WorkerError> {
    let failpoint = Failpoint::from_env();
    let Some(pool) = retry("postgres", &shutdown, || {
        tps_runtime::db::connect(config.common.database_url.expose(), config.db_pool_size)
    })
    .await
    else {
        return Ok(());
    };
    tps_runtime::db::migrate(&pool).await.map_err(|e| WorkerError::Migrate(e.to_string()))?;
    // Email keys that migration 0003 computed in SQL, confirmed by the one Rust function.
    let rekeyed =
        crate::users::rekey_pending(&pool).await.map_err(|e| WorkerError::Migrate(e.to_string()))?;
    if rekeyed > 0 {
        tracing::info!(rekeyed, "email keys re-keyed by the Rust normalisation");
    }
    let nats = config
        .common
        .nats_options()
        .await
        .map_err(|e| WorkerError::Nats(format!("NATS_CREDS: {e}")))?
        .name(format!("worker {}", config.worker_id))
        .retry_on_initial_connect()
        .connect(config.common.nats_servers())
        .await
        .map_err(|e| WorkerError::Nats(e.to_string()))?;
    let js = jetstream::new(nats.clone());
    let limits = StreamLimits::with_replicas(config.common.nats_replicas.into());
    // Under the operator (NATS_STREAMS_CREATE=false) the streams and consumers are its own,
    // with the limits of the spec: they are waited for, never made here.
    let streams = Streams {
        names: &config.common.nats_stream_prefix,
        limits: config.common.nats_streams_create.then_some(&limits),
        shards: config.common.shards,
    };
    if !prepare_consumers::<Orders>(&js, &streams, &shutdown).await
        || !prepare_consumers::<Users>(&js, &streams, &shutdown).await
    {
        return Ok(());
    }
    let redis = Arc::new(
        RedisLink::new(&config.common.redis_url, config.common.redis_ca_cert.as_deref())
            .map_err(|e| WorkerError::Config(e.to_string()))?,
    );
    let ready = Arc::new(AtomicBool::new(false));
    let app = http::router(ready.clone(), metrics::metrics().registry().clone());
    let (addr, http_task) = http::serve(config.common.metrics_listen, app, shutdown.clone())
        .await
        .map_err(WorkerError::Listen)?;
    tracing::info!(worker = config.worker_id, %addr, shards = config.common.shards, ?failpoint, "worker started");

    // Orders and sign-ups are owned independently: each stream has its own leases,
    // membership and fences, and a batch of one never waits for the other.
    let orders = ownership(
        &redis,
        &ready,
        SettleContext::new(Orders, pool.clone(), nats.clone(), js.clone(), config.clone(), failpoint),
    );
    let users = ownership(
        &redis,
        &ready,
        SettleContext::new(Users, pool.clone(), nats.clone(), js, config, failpoint),
    );
    tokio::join!(orders.run(shutdown.clone()), users.run(shutdown));

    let _ = http_task.await;
    let _ = nats.flush().await;
    pool.close().await;
    tracing::info!("worker stopped");
    Ok(())
}

fn ownership<K: CommandKind>(
    redis: &Arc<RedisLink>,
    ready: &Arc<AtomicBool>,
    shared: SettleContext<K>,
) -> Ownership<K> {
    let config = &shared.config;
    // Keyed by the stream's own name: deployments sharing a Redis never share a lease.
    let stream = shared.names().stream(K::STREAM);
    let leases = LeaseTable::new(redis.clone(), &stream, &config.worker_id, config.lease_ttl());
    let membership = Membership::new(redis.clone(), &stream, &config.worker_id, config.lease_ttl());
    Ownership::new(Arc::new(shared), leases, membership, ready.clone())
}

/// The streams a worker settles from, and whether it may create them.
struct Streams<'a> {
    /// Their names.
    names: &'a StreamNames,
    /// The limits to create them with; `None` when the operator owns them.
    limits: Option<&'a StreamLimits>,
    /// Shards, one durable consumer each.
    shards: u32,
}

/// Ensures (or, under the operator, waits for) the streams and every shard's durable
/// consumer; false if shut down first.
async fn prepare_consumers<K: CommandKind>(
    js: &jetstream::Context,
    streams: &Streams<'_>,
    shutdown: &CancellationToken,
) -> bool {
    let names = streams.names;
    retry("jetstream", shutdown, || async {
        match streams.limits {
            Some(limits) => ensure_named_streams(js, names, limits).await,
            None => expect_named_streams(js, names).await,
        }
        .map_err(|e| e.to_string())?;
        let stream = js.get_stream(names.stream(K::STREAM)).await.map_err(|e| e.to_string())?;
        for shard in 0..streams.shards {
            let name = names.consumer(K::STREAM, shard);
            let config = named_shard_consumer(names, K::STREAM, shard);
            match streams.limits {
                Some(_) => {
                    stream.get_or_create_consumer(&name, config).await.map(drop).map_err(|e| e.to_string())
                }
                None => stream
                    .get_consumer::<jetstream::consumer::pull::Config>(&name)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string()),
            }?;
        }
        Ok::<_, String>(())
    })
    .await
    .is_some()
}

/// Retries `op` with backoff until it succeeds (Some) or `shutdown` (None):
/// a worker started before its servers waits for them instead of crash-looping.
async fn retry<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(
    what: &str,
    shutdown: &CancellationToken,
    mut op: impl FnMut() -> F,
) -> Option<T> {
    for attempt in 0u32.. {
        match op().await {
            Ok(v) => return Some(v),
            Err(e) => tracing::warn!(what, attempt, error = %e, "not available yet; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(backoff(attempt).max(Duration::from_millis(250))) => {}
        }
    }
    None
}
