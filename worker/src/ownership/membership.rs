//! `Membership`: which workers are alive, from heartbeats in a Redis sorted set.
//!
//! Each worker scores itself with Redis' own clock (so that skewed machine
//! clocks do not matter), drops members silent for longer than the ttl, and reads
//! the rest, all in one script call per tick.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;

use crate::redis_link::{RedisError, RedisLink};

/// KEYS: the member set. ARGV: me, ttl ms. Returns the live members.
static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        redis.call('ZADD', KEYS[1], now, ARGV[1])
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
        return redis.call('ZRANGE', KEYS[1], 0, -1)",
    )
});

/// This worker's view of the live workers of one stream.
pub struct Membership {
    redis: Arc<RedisLink>,
    key: String,
    me: String,
    ttl: Duration,
}

impl Membership {
    /// Membership of `stream`'s workers, as `me`, where silence longer than `ttl` means dead.
    pub fn new(redis: Arc<RedisLink>, stream: &str, me: &str, ttl: Duration) -> Self {
        Self { redis, key: format!("tps:members:{stream}"), me: me.to_owned(), ttl }
    }

    /// Says we are alive and returns every live member, sorted, us included.
    pub async fn heartbeat(&self) -> Result<Vec<String>, RedisError> {
        let mut call = HEARTBEAT.prepare_invoke();
        call.key(&self.key).arg(&self.me).arg(self.ttl.as_millis() as u64);
        let mut members: Vec<String> = self.redis.eval(&call).await?;
        members.sort();
        Ok(members)
    }

    /// Leaves at once, so the others rebalance without waiting for the ttl.
    pub async fn leave(&self) -> Result<(), RedisError> {
        self.redis.query::<i64>(redis::cmd("ZREM").arg(&self.key).arg(&self.me)).await.map(drop)
    }
}
