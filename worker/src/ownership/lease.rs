//! `ShardLease`: one owner per shard at a time, through a Redis key with a
//! time to live, and a fencing token that only ever grows.
//!
//! The lease alone is not enough (a paused process may believe it still holds an
//! expired lease), so every acquisition also draws a token from a per-shard
//! counter. The token is written to Postgres (`fence`) before the owner settles
//! anything, and every settling transaction re-checks it there.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;

use crate::redis_link::{RedisError, RedisLink};

/// Takes the lease if free and draws the next token, atomically.
/// KEYS: lease, token counter. ARGV: holder, ttl ms. Returns the token, or 0 if held.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
        local token = redis.call('INCR', KEYS[2])
        redis.call('SET', KEYS[1], ARGV[1] .. '#' .. token, 'PX', ARGV[2])
        return token",
    )
});

/// Extends the lease only if we still hold it (same holder and token).
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('GET', KEYS[1]) == ARGV[1] then
            return redis.call('PEXPIRE', KEYS[1], ARGV[2])
        end
        return 0",
    )
});

/// Deletes the lease only if we still hold it, so we never free someone else's.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0",
    )
});

/// Raises the token counter to at least ARGV[1] (after Redis lost its data, its
/// counter restarts below the fence that Postgres remembers).
static RAISE_COUNTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local current = tonumber(redis.call('GET', KEYS[1]) or '0')
        if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
        return 1",
    )
});

/// The leases of one stream's shards, as seen by one worker.
#[derive(Clone)]
pub struct LeaseTable {
    redis: Arc<RedisLink>,
    stream: String,
    holder: String,
    ttl: Duration,
}

/// A held lease: the shard and its fencing token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardLease {
    /// The shard.
    pub shard: u32,
    /// The fencing token drawn with this acquisition; larger than any before it.
    pub token: i64,
}

impl LeaseTable {
    /// Leases of `stream` held under the name `holder`, each living `ttl` unless renewed.
    pub fn new(redis: Arc<RedisLink>, stream: &str, holder: &str, ttl: Duration) -> Self {
        Self { redis, stream: stream.to_owned(), holder: holder.to_owned(), ttl }
    }

    /// The Redis key of a shard's lease.
    pub fn lease_key(&self, shard: u32) -> String {
        format!("tps:lease:{}:{shard}", self.stream)
    }

    fn counter_key(&self, shard: u32) -> String {
        format!("tps:lease-token:{}:{shard}", self.stream)
    }

    fn value(&self, lease: &ShardLease) -> String {
        format!("{}#{}", self.holder, lease.token)
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    /// Takes the shard if nobody holds it.
    pub async fn acquire(&self, shard: u32) -> Result<Option<ShardLease>, RedisError> {
        let mut call = ACQUIRE.prepare_invoke();
        call.key(self.lease_key(shard)).key(self.counter_key(shard)).arg(&self.holder).arg(self.ttl_ms());
        let token: i64 = self.redis.eval(&call).await?;
        Ok((token > 0).then_some(ShardLease { shard, token }))
    }

    /// Extends the lease; `false` means it was lost (expired and maybe taken).
    pub async fn renew(&self, lease: &ShardLease) -> Result<bool, RedisError> {
        let mut call = RENEW.prepare_invoke();
        call.key(self.lease_key(lease.shard)).arg(self.value(lease)).arg(self.ttl_ms());
        Ok(self.redis.eval::<i64>(&call).await? == 1)
    }

    /// Frees the lease if we still hold it.
    pub async fn release(&self, lease: &ShardLease) -> Result<bool, RedisError> {
        let mut call = RELEASE.prepare_invoke();
        call.key(self.lease_key(lease.shard)).arg(self.value(lease));
        Ok(self.redis.eval::<i64>(&call).await? == 1)
    }

    /// Makes the next token of `shard` larger than `fence`.
    pub async fn raise_counter(&self, shard: u32, fence: i64) -> Result<(), RedisError> {
        let mut call = RAISE_COUNTER.prepare_invoke();
        call.key(self.counter_key(shard)).arg(fence);
        self.redis.eval::<i64>(&call).await.map(drop)
    }

    /// Which shards in `0..shards` are free right now, in one round trip.
    pub async fn free_shards(&self, shards: u32) -> Result<Vec<bool>, RedisError> {
        let mut cmd = redis::cmd("MGET");
        for shard in 0..shards {
            cmd.arg(self.lease_key(shard));
        }
        let values: Vec<Option<String>> = self.redis.query(&cmd).await?;
        Ok(values.iter().map(Option::is_none).collect())
    }
}
