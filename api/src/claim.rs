//! Claiming a command's key in Redis, for every kind of command (orders and
//! sign-ups): one parameterised script, one round trip (a plain read when new keys
//! are refused).
//!
//! The claim is a hash holding the body's fingerprint and the accepted time, plus
//! whatever fields the kind keeps for its PENDING answer. The same key with the same
//! body is a replay, with another body a conflict. A claim marked `failed` (its
//! publish was never acknowledged) is taken again as new, so a retry after a 503 is
//! not reported as a replay. A kind may ask to refuse a new key (an order for a
//! ticket known to be sold out: nothing is written), and may index the new key
//! under its owner in a sorted set, pruned to the claim's lifetime.

use std::sync::LazyLock;

use redis::Script;

use crate::redis_link::{RedisLink, RedisUnavailable};

/// What the script found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The key is ours now, accepted at `created_ms`.
    New { created_ms: i64 },
    /// The same key and body came before; answer as then.
    Replay { created_ms: i64 },
    /// The key came before with another body.
    Conflict,
    /// The key is new and [`Claim::refuse_new`] was set: nothing was written.
    Refused,
}

/// One claim to make.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    /// The claim's key.
    pub key: String,
    /// The body's fingerprint: what must match for a replay.
    pub fingerprint: &'a str,
    /// Now, in ms since the epoch: the accepted time of a new claim.
    pub now_ms: i64,
    /// Lifetime of the claim (and of the owner's index).
    pub ttl_secs: u64,
    /// Refuse a new key (write nothing); a known key is still answered.
    pub refuse_new: bool,
    /// Further fields of a new claim, beside `fp` and `created`.
    pub fields: &'a [(&'static str, String)],
    /// The owner's index (a sorted set by accepted time) and the member for this claim.
    pub index: Option<(String, String)>,
}

// KEYS[1] the claim, KEYS[2] (optional) the owner's index.
// ARGV: fingerprint, now_ms, ttl_secs, refuse_new ('1'), index member, then field/value pairs.
const CLAIM_LUA: &str = r#"
local fp = redis.call('HGET', KEYS[1], 'fp')
if fp then
  if fp ~= ARGV[1] then return {2, 0} end
  local created = redis.call('HGET', KEYS[1], 'created')
  if redis.call('HDEL', KEYS[1], 'failed') == 1 then return {0, created} end
  return {1, created}
end
if ARGV[4] == '1' then return {3, 0} end
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'created', ARGV[2], unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[1], ARGV[3])
if #KEYS > 1 then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[5])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (tonumber(ARGV[2]) - tonumber(ARGV[3]) * 1000))
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return {0, ARGV[2]}
"#;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(CLAIM_LUA));

/// Claims the key: the claim script (EVALSHA; loaded on first use), or, when new keys are
/// refused, a plain read first (see [`known_when_refusing`]).
pub async fn claim(redis: &RedisLink, claim: &Claim<'_>) -> Result<Outcome, RedisUnavailable> {
    if claim.refuse_new
        && let Some(outcome) = known_when_refusing(redis, claim).await?
    {
        return Ok(outcome);
    }
    let mut invocation = SCRIPT.prepare_invoke();
    invocation.key(&claim.key);
    if let Some((index, _)) = &claim.index {
        invocation.key(index);
    }
    invocation
        .arg(claim.fingerprint)
        .arg(claim.now_ms)
        .arg(claim.ttl_secs)
        .arg(if claim.refuse_new { "1" } else { "0" })
        .arg(claim.index.as_ref().map_or("", |(_, member)| member.as_str()));
    for (field, value) in claim.fields {
        invocation.arg(*field).arg(value);
    }
    let (code, created): (i64, i64) =
        redis.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await?;
    Ok(match code {
        0 => Outcome::New { created_ms: created },
        1 => Outcome::Replay { created_ms: created },
        2 => Outcome::Conflict,
        _ => Outcome::Refused,
    })
}

/// A claim that refuses new keys writes nothing unless the key's publish failed, so it is
/// answered with one `HMGET` instead of the script: a new key is refused, another
/// fingerprint is a conflict, a live claim is a replay. These are most requests of a
/// sold-out sale, and a read costs Redis a fraction of a script call. A failed or
/// malformed claim (`None`) is left to the script, which takes it again atomically.
async fn known_when_refusing(
    redis: &RedisLink,
    claim: &Claim<'_>,
) -> Result<Option<Outcome>, RedisUnavailable> {
    let key = claim.key.clone();
    let (fingerprint, created, failed): (Option<String>, Option<String>, Option<String>) = redis
        .run(|mut conn| async move {
            redis::cmd("HMGET").arg(&key).arg("fp").arg("created").arg("failed").query_async(&mut conn).await
        })
        .await?;
    Ok(match (fingerprint, created, failed) {
        (None, _, _) => Some(Outcome::Refused),
        (Some(fp), _, _) if fp != claim.fingerprint => Some(Outcome::Conflict),
        (Some(_), Some(created), None) => {
            created.parse().ok().map(|created_ms| Outcome::Replay { created_ms })
        }
        _ => None,
    })
}

/// The body a claim binds its key to: what must match for a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// The body's fingerprint.
    pub fingerprint: String,
    /// Further fields of the claim (an order's buyer, ticket and quantity), part of the match.
    pub fields: Vec<(&'static str, String)>,
}

/// What a claim holds, and what Postgres or the stream tells of a key's first use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The first body.
    pub body: Body,
    /// When the key was first accepted (ms since the epoch).
    pub created_ms: i64,
}

/// Writes back the claim at `key` from its `record` (Redis lost it, or a claim was just
/// made with another body), so that the next request with its key is answered from Redis
/// again. Best effort.
pub async fn remember(redis: &RedisLink, key: String, record: &Record, ttl_secs: u64) {
    let mut all = vec![("fp", record.body.fingerprint.clone()), ("created", record.created_ms.to_string())];
    all.extend(record.body.fields.iter().cloned());
    // Its fields, not failed, with a fresh TTL, atomically. Best effort: without it the next
    // request asks Postgres again.
    let _ = redis
        .run(|mut conn| async move {
            redis::pipe()
                .atomic()
                .hset_multiple(&key, &all)
                .ignore()
                .hdel(&key, "failed")
                .ignore()
                .expire(&key, ttl_secs as i64)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        })
        .await;
}

/// Marks the claim at `key` as failed (its publish got no PubAck), so that a retry counts
/// as new and the claim is not shown as PENDING. Best effort: the retry is what matters.
pub async fn mark_failed(redis: &RedisLink, key: String) {
    let _ = redis
        .run(|mut conn| async move {
            redis::cmd("HSET").arg(&key).arg("failed").arg(1).query_async::<i64>(&mut conn).await
        })
        .await;
}
