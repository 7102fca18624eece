//! Claiming a sign-up id in Redis: one script, one round trip. The claim holds
//! the body's fingerprint, so the same id with another body is a conflict, and
//! while it lives it is also the PENDING record that `GET /v1/users/{id}` reads.

use std::sync::LazyLock;

use redis::Script;
use uuid::Uuid;

use crate::redis_link::{RedisLink, RedisUnavailable};

/// What the script found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The id is ours now, accepted at `created_ms`.
    New { created_ms: i64 },
    /// The same id and body came before; answer as then.
    Replay { created_ms: i64 },
    /// The id came before with another body.
    Conflict,
}

// KEYS[1] the claim. ARGV: fingerprint, now_ms, ttl_secs.
// A claim marked `failed` (its publish was never acknowledged) is taken again as new.
const CLAIM_LUA: &str = r#"
local fp = redis.call('HGET', KEYS[1], 'fp')
if fp then
  if fp ~= ARGV[1] then return {2, 0} end
  local created = redis.call('HGET', KEYS[1], 'created')
  if redis.call('HDEL', KEYS[1], 'failed') == 1 then return {0, created} end
  return {1, created}
end
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'created', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {0, ARGV[2]}
"#;

static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(CLAIM_LUA));

/// Runs the claim script.
pub async fn claim(
    redis: &RedisLink,
    id: &Uuid,
    fingerprint: &str,
    now_ms: i64,
    ttl_secs: u64,
) -> Result<Claim, RedisUnavailable> {
    let mut invocation = CLAIM.prepare_invoke();
    invocation.key(super::signup_key(id)).arg(fingerprint).arg(now_ms).arg(ttl_secs);
    let (code, created): (i64, i64) =
        redis.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await?;
    Ok(match code {
        0 => Claim::New { created_ms: created },
        1 => Claim::Replay { created_ms: created },
        _ => Claim::Conflict,
    })
}

/// Writes the claim of a sign-up whose body is known from Postgres or JetStream
/// (Redis had lost it, or a claim was just made with another body). Best effort.
pub async fn remember(redis: &RedisLink, id: &Uuid, fingerprint: &str, created_ms: i64, ttl_secs: u64) {
    let key = super::signup_key(id);
    let fields = [("fp", fingerprint.to_owned()), ("created", created_ms.to_string())];
    crate::redis_link::write_claim(redis, key, &fields, ttl_secs).await;
}

/// Marks a claim whose publish failed: a retry counts as new, and it is not shown as PENDING.
pub async fn mark_failed(redis: &RedisLink, id: &Uuid) {
    crate::redis_link::mark_failed(redis, super::signup_key(id)).await;
}

/// When the sign-up was accepted, if a live claim says it is PENDING.
pub async fn pending_since(redis: &RedisLink, id: &Uuid) -> Result<Option<i64>, RedisUnavailable> {
    let key = super::signup_key(id);
    let (created, failed): (Option<i64>, Option<String>) = redis
        .run(|mut conn| async move {
            redis::cmd("HMGET").arg(&key).arg("created").arg("failed").query_async(&mut conn).await
        })
        .await?;
    Ok(created.filter(|_| failed.is_none()))
}
