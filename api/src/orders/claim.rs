//! Claiming an `Idempotency-Key` in Redis: one script, one round trip.
//!
//! The script checks the claim and, when the key is new, writes the PENDING
//! record and indexes it under the user, all atomically. The claim stores a
//! fingerprint of the body, so the same key with another body is a conflict.

use std::sync::LazyLock;

use redis::Script;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::redis_link::{RedisLink, RedisUnavailable};

/// What the script found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours now; the PENDING record was written with this `createdAt` (ms).
    New { created_ms: i64 },
    /// The same user sent the same key and body before; answer as then.
    Replay { created_ms: i64 },
    /// The key was used before with a different body.
    Conflict,
    /// The key is new and the ticket is known to be sold out: nothing was written.
    SoldOut,
}

/// One order's claim request.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    /// The derived order id.
    pub order_id: Uuid,
    /// The buyer.
    pub user: &'a str,
    /// The ticket.
    pub ticket_id: Uuid,
    /// How many.
    pub quantity: u32,
    /// Now, in ms since the epoch; the `createdAt` of a new order.
    pub now_ms: i64,
    /// Whether the ticket cache says sold out (a new key then gets no record).
    pub sold_out: bool,
    /// Lifetime of the record and the user index.
    pub ttl_secs: u64,
}

// KEYS[1] order record, KEYS[2] the user's index.
// ARGV: fingerprint, user, ticket, quantity, now_ms, ttl_secs, sold_out, order id.
// A record marked `failed` (its publish was never acknowledged) is claimed again
// as new, so a retry after a 503 is not reported as a replay.
const CLAIM_LUA: &str = r#"
local fp = redis.call('HGET', KEYS[1], 'fp')
if fp then
  if fp ~= ARGV[1] then return {2, 0} end
  local created = redis.call('HGET', KEYS[1], 'created')
  if redis.call('HDEL', KEYS[1], 'failed') == 1 then return {0, created} end
  return {1, created}
end
if ARGV[7] == '1' then return {3, 0} end
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'user', ARGV[2], 'ticket', ARGV[3], 'qty', ARGV[4], 'created', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[8])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (tonumber(ARGV[5]) - tonumber(ARGV[6]) * 1000))
redis.call('EXPIRE', KEYS[2], ARGV[6])
return {0, ARGV[5]}
"#;

static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(CLAIM_LUA));

/// The body's fingerprint: what must match for a replay.
pub fn fingerprint(ticket_id: &Uuid, quantity: u32) -> String {
    let mut hash = Sha256::new();
    hash.update(ticket_id.as_bytes());
    hash.update(quantity.to_be_bytes());
    hex::encode(&hash.finalize()[..16])
}

/// Runs the claim script (EVALSHA; the script is loaded on first use).
pub async fn claim(redis: &RedisLink, req: &ClaimRequest<'_>) -> Result<Claim, RedisUnavailable> {
    let mut invocation = CLAIM.prepare_invoke();
    invocation
        .key(super::order_key(&req.order_id))
        .key(super::user_orders_key(req.user))
        .arg(fingerprint(&req.ticket_id, req.quantity))
        .arg(req.user)
        .arg(req.ticket_id.to_string())
        .arg(req.quantity)
        .arg(req.now_ms)
        .arg(req.ttl_secs)
        .arg(if req.sold_out { "1" } else { "0" })
        .arg(req.order_id.to_string());
    let (code, created): (i64, i64) =
        redis.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await?;
    Ok(match code {
        0 => Claim::New { created_ms: created },
        1 => Claim::Replay { created_ms: created },
        2 => Claim::Conflict,
        _ => Claim::SoldOut,
    })
}

/// Writes the claim of an order whose body is known from Postgres or JetStream
/// (Redis had lost it, or a claim was just made with another body), so that the
/// next request with this key is answered from Redis again. Best effort.
pub async fn remember(redis: &RedisLink, order_id: &Uuid, stored: &RememberedOrder<'_>, ttl_secs: u64) {
    let key = super::order_key(order_id);
    let fields = [
        ("fp", fingerprint(&stored.ticket_id, stored.quantity)),
        ("user", stored.user.to_owned()),
        ("ticket", stored.ticket_id.to_string()),
        ("qty", stored.quantity.to_string()),
        ("created", stored.created_ms.to_string()),
    ];
    crate::redis_link::write_claim(redis, key, &fields, ttl_secs).await;
}

/// The body of an order as first accepted.
#[derive(Debug, Clone)]
pub struct RememberedOrder<'a> {
    /// The buyer.
    pub user: &'a str,
    /// The ticket.
    pub ticket_id: Uuid,
    /// How many.
    pub quantity: u32,
    /// When first accepted (ms).
    pub created_ms: i64,
}

/// Marks a claim whose publish failed, so that a retry counts as new and the
/// record is not shown as PENDING.
pub async fn mark_failed(redis: &RedisLink, order_id: &Uuid) {
    crate::redis_link::mark_failed(redis, super::order_key(order_id)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_ticket_and_quantity() {
        let t = Uuid::from_u128(1);
        assert_eq!(fingerprint(&t, 1), fingerprint(&t, 1));
        assert_ne!(fingerprint(&t, 1), fingerprint(&t, 2));
        assert_ne!(fingerprint(&t, 1), fingerprint(&Uuid::from_u128(2), 1));
    }
}
