//! Start-up: connecting to Postgres, NATS and Redis, migrating, the streams, the
//! ticket cache, and the background tasks behind an [`AppState`].

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tps_contract::streams::{StreamLimits, ensure_named_streams, expect_named_streams};
use tps_contract::subject::{ORDER_EVENTS, ORDERS_STREAM, TICKET_EVENTS, USERS_STREAM};

use crate::claims_watch::{self, ClaimsWatch};
use crate::config::Config;
use crate::events::{self, Hub};
use crate::gauges;
use crate::protect::{Protection, backlog};
use crate::recall::{self, Batcher};
use crate::redis_link::RedisLink;
use crate::state::{AppState, Settings, Shared, Tasks};
use crate::telemetry;
use crate::tickets::{SearchCache, TicketCache, refresh};

/// Why the api could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// AUTH_JWT_SECRET is required by the api.
    #[error("AUTH_JWT_SECRET (--auth-jwt-secret) is required")]
    MissingJwtSecret,
    /// AUTH_JWT_SECRET is too short to resist brute force.
    #[error(transparent)]
    WeakJwtSecret(#[from] tps_runtime::auth::WeakSecret),
    /// Postgres could not be reached or queried.
    #[error("postgres: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// NATS could not be reached.
    #[error("nats: {0}")]
    Nats(String),
    /// The JetStream streams could not be created.
    #[error(transparent)]
    Streams(#[from] tps_contract::streams::StreamError),
    /// The Redis URL is invalid.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A listener could not be bound.
    #[error("listen: {0}")]
    Io(#[from] std::io::Error),
}

/// Connects to everything, migrates, creates the streams, subscribes to the workers'
/// events, loads the ticket cache and starts its refresh and the other background tasks.
pub async fn connect(config: &Config) -> Result<AppState, StartError> {
    let secret = config.jwt_secret().ok_or(StartError::MissingJwtSecret)?.expose();
    let tokens = tps_runtime::auth::Verifier::new(
        secret.as_bytes(),
        config.auth_jwt_audience.as_deref(),
        config.auth_jwt_issuer.as_deref(),
    )?;
    let metrics = telemetry::metrics();

    let db = tps_runtime::db::connect(config.common.database_url.expose(), config.db_max_connections).await?;
    tps_runtime::db::migrate(&db).await?;

    let nats = connect_nats(nats_options(config).await?, config.common.nats_servers(), "tps-api").await?;
    let mut jetstream = jetstream::new(nats.clone());
    jetstream.set_timeout(config.publish_timeout());
    let names = config.common.nats_stream_prefix.clone();
    // Under the operator the streams exist before any pod starts, with the limits of the
    // spec: use them, never create them with other limits.
    if config.common.nats_streams_create {
        let limits = StreamLimits::with_replicas(config.common.nats_replicas.into());
        ensure_named_streams(&jetstream, &names, &limits).await?;
    } else {
        expect_named_streams(&jetstream, &names).await?;
    }

    let (redis, redis_task) = RedisLink::start(
        &config.common.redis_url,
        config.common.redis_ca_cert.as_deref(),
        config.redis_timeout(),
    )?;

    // Live updates get a thread and a NATS connection of their own (see `events::lane`).
    // Subscribe before loading, so no change falls between the load and the stream.
    let lane = events::Lane::start()?;
    let (options, servers) = (nats_options(config).await?, config.common.nats_servers());
    let (order_subject, ticket_subject) = (names.subject(ORDER_EVENTS), names.subject(TICKET_EVENTS));
    let (order_events, ticket_events) = lane
        .spawn(async move {
            let nats = connect_nats(options, servers, "tps-api-events").await?;
            let subscribe = |subject: String| {
                let nats = nats.clone();
                async move { nats.subscribe(subject).await.map_err(|e| StartError::Nats(e.to_string())) }
            };
            tokio::try_join!(subscribe(order_subject), subscribe(ticket_subject))
        })
        .await
        .map_err(|e| StartError::Nats(format!("events connection: {e}")))??;
    let tickets = Arc::new(TicketCache::with_unknown_cap(config.limits.unknown_tickets_max));
    let watermark = refresh::load_all(&tickets, &db).await?;
    let every = Duration::from_millis(config.cache_refresh_ms.clamp(10, 500));
    let protection = Arc::new(Protection::new(&config.limits));
    let lag_every = Duration::from_millis(config.limits.lag_poll_ms.max(50));
    let caps = events::Caps::new(config.limits.events_max_per_user, config.limits.events_max_per_pod);
    let hub = Hub::with_caps(config.events_buffer, caps);
    let (settled_orders, orders_task) = Batcher::start(db.clone(), protection.db.clone(), recall::orders);
    let (settled_signups, signups_task) = Batcher::start(db.clone(), protection.db.clone(), recall::signups);
    let claims = Arc::new(ClaimsWatch::default());
    let tasks = vec![
        orders_task,
        signups_task,
        tokio::spawn(claims_watch::watch_forever(
            claims.clone(),
            redis.clone(),
            jetstream.clone(),
            names.clone(),
            config.common.shards,
        )),
        tokio::spawn(protection.clone().sweep_forever()),
        tokio::spawn(
            protection.db.clone().probe_forever(db.clone(), Duration::from_millis(config.limits.db_probe_ms)),
        ),
        tokio::spawn(backlog::watch_forever(
            protection.backlog.clone(),
            jetstream.clone(),
            names.clone(),
            ORDERS_STREAM,
            &metrics.order_consumer_lag,
            config.common.shards,
            lag_every,
        )),
        tokio::spawn(backlog::watch_forever(
            protection.signup_backlog.clone(),
            jetstream.clone(),
            names.clone(),
            USERS_STREAM,
            &metrics.signup_consumer_lag,
            config.common.shards,
            lag_every,
        )),
        redis_task,
        lane.spawn(events::pump::run(order_events, ticket_events, tickets.clone(), hub.clone())),
        tokio::spawn(refresh::poll_forever(tickets.clone(), db.clone(), every, watermark)),
        tokio::spawn(gauges::poll_forever(
            jetstream.clone(),
            names.clone(),
            tickets.clone(),
            config.common.shards,
        )),
    ];
    // A short grace so the first orders find Redis connected; serving starts regardless.
    redis.wait_connected(Duration::from_secs(2)).await;

    let settings = Settings {
        tokens,
        shards: config.common.shards,
        names,
        publish_timeout: config.publish_timeout(),
        pending_ttl_secs: config.pending_ttl_secs,
    };
    Ok(AppState::new(Shared {
        db,
        nats,
        jetstream,
        redis,
        tickets,
        searches: Arc::new(SearchCache::default()),
        events: hub,
        lane: Arc::new(lane),
        settings: Arc::new(settings),
        metrics,
        protection,
        settled_orders,
        settled_signups,
        claims,
        _tasks: Tasks(tasks),
    }))
}

/// The NATS connect options of the config (its credentials file, when set).
async fn nats_options(config: &Config) -> Result<async_nats::ConnectOptions, StartError> {
    config.common.nats_options().await.map_err(|e| StartError::Nats(format!("NATS_CREDS: {e}")))
}

/// A NATS client named `name`. Its connection task runs on the runtime that awaits this.
async fn connect_nats(
    options: async_nats::ConnectOptions,
    servers: Vec<String>,
    name: &str,
) -> Result<async_nats::Client, StartError> {
    options
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .connect(servers)
        .await
        .map_err(|e| StartError::Nats(e.to_string()))
}
