//! Sign-ups: the claim on the id in Redis, the JetStream publish, and the
//! settled users in Postgres.

pub mod claim;
pub mod store;

/// Redis key of a sign-up's claim and PENDING record.
pub fn signup_key(id: &uuid::Uuid) -> String {
    format!("tps:signup:{id}")
}
