//! Claiming an `Idempotency-Key` in Redis through the one claim script
//! ([`crate::claim`]): when the key is new it writes the PENDING record (buyer,
//! ticket, quantity) and indexes it under the user, all atomically. The claim stores
//! a fingerprint of the body, so the same key with another body is a conflict.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::claim::Outcome;
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

/// The body's fingerprint: what must match for a replay.
pub fn fingerprint(ticket_id: &Uuid, quantity: u32) -> String {
    let mut hash = Sha256::new();
    hash.update(ticket_id.as_bytes());
    hash.update(quantity.to_be_bytes());
    hex::encode(&hash.finalize()[..16])
}

/// The PENDING record's fields beside the fingerprint and the accepted time.
fn record_fields(user: &str, ticket_id: &Uuid, quantity: u32) -> [(&'static str, String); 3] {
    [("user", user.to_owned()), ("ticket", ticket_id.to_string()), ("qty", quantity.to_string())]
}

/// Claims the order's key: the order record and the user's index, in one round trip.
pub async fn claim(redis: &RedisLink, req: &ClaimRequest<'_>) -> Result<Claim, RedisUnavailable> {
    let fingerprint = fingerprint(&req.ticket_id, req.quantity);
    let fields = record_fields(req.user, &req.ticket_id, req.quantity);
    let outcome = crate::claim::claim(
        redis,
        &crate::claim::Claim {
            key: super::order_key(&req.order_id),
            fingerprint: &fingerprint,
            now_ms: req.now_ms,
            ttl_secs: req.ttl_secs,
            refuse_new: req.sold_out,
            fields: &fields,
            index: Some((super::user_orders_key(req.user), req.order_id.to_string())),
        },
    )
    .await?;
    Ok(match outcome {
        Outcome::New { created_ms } => Claim::New { created_ms },
        Outcome::Replay { created_ms } => Claim::Replay { created_ms },
        Outcome::Conflict => Claim::Conflict,
        Outcome::Refused => Claim::SoldOut,
    })
}

/// Writes the claim of an order whose body is known from Postgres or JetStream
/// (Redis had lost it, or a claim was just made with another body), so that the
/// next request with this key is answered from Redis again. Best effort.
pub async fn remember(redis: &RedisLink, order_id: &Uuid, stored: &RememberedOrder<'_>, ttl_secs: u64) {
    let fields = record_fields(stored.user, &stored.ticket_id, stored.quantity);
    let fingerprint = fingerprint(&stored.ticket_id, stored.quantity);
    crate::claim::remember(
        redis,
        super::order_key(order_id),
        fingerprint,
        stored.created_ms,
        &fields,
        ttl_secs,
    )
    .await;
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
    crate::claim::mark_failed(redis, super::order_key(order_id)).await;
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
