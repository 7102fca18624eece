//! Orders: the idempotency claim, the PENDING records in Redis, the JetStream
//! publish, and the settled rows in Postgres.

pub mod claim;
pub mod pending;
pub mod store;

/// Redis key of an order's PENDING record and idempotency claim.
///
/// The order id is a v5 uuid of (user, Idempotency-Key), so keying the claim by
/// it binds the claim to both without storing either in the key.
pub fn order_key(id: &uuid::Uuid) -> String {
    format!("tps:order:{id}")
}

/// Redis key of a user's recent orders, a sorted set scored by `createdAt` in ms.
pub fn user_orders_key(user: &str) -> String {
    format!("tps:user-orders:{user}")
}
