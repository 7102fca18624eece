//! The three servers together, and the environment that points a binary at them.

use crate::{Nats, Postgres, Redis};

/// The signing key of test tokens (see [`crate::token`]).
pub const TEST_JWT_SECRET: &str = "testkit-jwt-secret-not-for-production";

/// NATS, Postgres (with a fresh database) and Redis, all private to one test.
pub struct Stack {
    /// The NATS server (the first node of a cluster).
    pub nats: Nats,
    /// The other nodes of a NATS cluster ([`Stack::start_cluster`]); empty for a single node.
    pub nats_peers: Vec<Nats>,
    /// The Postgres server.
    pub postgres: Postgres,
    /// The Redis server.
    pub redis: Redis,
    /// URL of this stack's database.
    pub database_url: String,
}

impl Stack {
    /// Starts all three at once.
    pub async fn start() -> anyhow::Result<Self> {
        let (nats, postgres, redis) = tokio::try_join!(Nats::start(), Postgres::start(), Redis::start())?;
        let database_url = postgres.create_database().await?;
        Ok(Self { nats, nats_peers: Vec::new(), postgres, redis, database_url })
    }

    /// The same with a NATS cluster of `nodes` servers; the binaries get every node in
    /// `NATS_URL` and create the streams with `NATS_REPLICAS=nodes`.
    pub async fn start_cluster(nodes: usize, sync_always: bool) -> anyhow::Result<Self> {
        let (mut cluster, postgres, redis) =
            tokio::try_join!(Nats::start_cluster(nodes, sync_always), Postgres::start(), Redis::start())?;
        let database_url = postgres.create_database().await?;
        let nats = cluster.remove(0);
        Ok(Self { nats, nats_peers: cluster, postgres, redis, database_url })
    }

    /// `NATS_URL`: every node, comma-separated.
    pub fn nats_url(&self) -> String {
        self.nats_nodes().map(Nats::url).collect::<Vec<_>>().join(",")
    }

    /// Every NATS node, the first one first.
    pub fn nats_nodes(&self) -> impl Iterator<Item = &Nats> {
        std::iter::once(&self.nats).chain(&self.nats_peers)
    }

    /// The NATS node named `name` (see [`Nats::name`]), to kill or restart it.
    pub fn nats_node_mut(&mut self, name: &str) -> Option<&mut Nats> {
        std::iter::once(&mut self.nats).chain(&mut self.nats_peers).find(|n| n.name() == name)
    }

    /// Like [`Stack::start`], with Postgres and Redis on TLS only (each with its own
    /// throwaway CA): `DATABASE_URL` says `sslmode=verify-full&sslrootcert=…`,
    /// `REDIS_URL` is `rediss://…` and [`Stack::env`] adds `REDIS_CA_CERT`.
    pub async fn start_tls() -> anyhow::Result<Self> {
        let (nats, postgres, redis) =
            tokio::try_join!(Nats::start(), Postgres::start_tls(), Redis::start_tls())?;
        let database_url = postgres.create_database().await?;
        Ok(Self { nats, nats_peers: Vec::new(), postgres, redis, database_url })
    }

    /// The CONTRACT environment variables for a binary using this stack.
    /// `API_LISTEN` and `METRICS_LISTEN` get free ports unless overridden later.
    pub fn env(&self, shards: u32) -> Vec<(String, String)> {
        vec![
            ("NATS_URL".into(), self.nats_url()),
            ("NATS_REPLICAS".into(), (1 + self.nats_peers.len()).to_string()),
            ("DATABASE_URL".into(), self.database_url.clone()),
            ("REDIS_URL".into(), self.redis.url()),
            ("AUTH_JWT_SECRET".into(), TEST_JWT_SECRET.into()),
            ("SHARDS".into(), shards.to_string()),
            ("API_LISTEN".into(), format!("127.0.0.1:{}", crate::free_port())),
            ("METRICS_LISTEN".into(), format!("127.0.0.1:{}", crate::free_port())),
            ("RUST_LOG".into(), "info".into()),
            // Every test client is on loopback: one "IP" for all of them.
            ("API_RATE_LIMIT_PER_IP".into(), "0".into()),
            // The 250 ms default bounds a Redis round trip so that a dead Redis costs little;
            // on a shared CI host a live one is sometimes starved longer than that, and one
            // timeout opens the breaker, so a contract test would meet the degraded answers
            // (a 503 for an unknown id). Tests of a dead Redis kill it: refusals are immediate.
            ("API_REDIS_TIMEOUT_MS".into(), "2000".into()),
        ]
        .into_iter()
        .chain(self.redis.tls().map(|tls| ("REDIS_CA_CERT".into(), tls.ca_cert.display().to_string())))
        .collect()
    }
}
