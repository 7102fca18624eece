//! The worker's configuration: the shared CONTRACT variables plus its own knobs.

use std::time::Duration;

use tps_runtime::config::CommonConfig;

/// Everything a worker needs, from flags or environment.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "worker",
    about = "Settles order and sign-up commands from JetStream into Postgres, exactly once."
)]
pub struct WorkerConfig {
    /// The variables every binary shares (NATS_URL, DATABASE_URL, REDIS_URL, SHARDS, …).
    #[command(flatten)]
    pub common: CommonConfig,
    /// This worker's name in membership and leases; must be unique among live workers.
    #[arg(long, env = "WORKER_ID", default_value_t = default_worker_id())]
    pub worker_id: String,
    /// Most messages settled in one Postgres transaction.
    #[arg(long, env = "BATCH_SIZE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    /// How long to linger for more messages once a batch has begun to fill.
    #[arg(long, env = "BATCH_WAIT_MS", default_value_t = 5)]
    pub batch_wait_ms: u64,
    /// Time to live of a shard lease; renewed every third of it.
    #[arg(long, env = "LEASE_TTL_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(300..))]
    pub lease_ttl_ms: u64,
    /// Deliveries after which a message that keeps failing goes to DEAD_LETTERS.
    #[arg(long, env = "MAX_DELIVERIES", default_value_t = 5, value_parser = clap::value_parser!(i64).range(1..))]
    pub max_deliveries: i64,
    /// First delay of a nak'd failing message; doubles with each delivery, capped at 30 s.
    #[arg(long, env = "NAK_DELAY_MS", default_value_t = 500)]
    pub nak_delay_ms: u64,
    /// Postgres connections of this worker (one per shard settling at once, plus the fence claims).
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 20)]
    pub db_pool_size: u32,
}

impl WorkerConfig {
    /// The lease time to live.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }

    /// How often leases are renewed and membership is refreshed: a third of the ttl
    /// (one missed renewal still leaves time for the next), and at least every
    /// second, so released shards are picked up within a second whatever the ttl.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms / 3).min(Duration::from_secs(1))
    }

    /// The linger once a batch has its first message.
    pub fn batch_wait(&self) -> Duration {
        Duration::from_millis(self.batch_wait_ms)
    }

    /// The delay of a nak after `delivered` deliveries.
    pub fn nak_delay(&self, delivered: i64) -> Duration {
        let doublings = delivered.clamp(1, 16) as u32 - 1;
        Duration::from_millis(self.nak_delay_ms.saturating_mul(1 << doublings)).min(Duration::from_secs(30))
    }
}

/// `hostname-pid-random`, unique enough that two pods never share it.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}-{:08x}", std::process::id(), rand::random::<u32>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_and_nak_backoff() {
        let c = WorkerConfig::try_parse_from(["worker", "--database-url", "postgres://x"]).unwrap();
        assert_eq!((c.batch_size, c.max_deliveries), (500, 5));
        assert!(!c.worker_id.is_empty());
        assert_eq!(c.nak_delay(1), Duration::from_millis(500));
        assert_eq!(c.nak_delay(3), Duration::from_millis(2000));
        assert_eq!(c.nak_delay(40), Duration::from_secs(30));
    }
}
