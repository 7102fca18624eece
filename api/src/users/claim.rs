//! What a sign-up's claim binds its id to ([`crate::claim`]): the body's fingerprint. While
//! the claim lives it is also the PENDING record that `GET /v1/users/{id}` reads.

use uuid::Uuid;

use crate::claim::{Body, Record};
use crate::redis_link::{RedisLink, RedisUnavailable};

/// The claim's body of a sign-up whose body has `fingerprint` (`Signup::fingerprint`).
pub fn body(fingerprint: String) -> Body {
    Body { fingerprint, fields: Vec::new() }
}

/// The claim of a sign-up first accepted at `created_ms`.
pub fn record(fingerprint: String, created_ms: i64) -> Record {
    Record { body: body(fingerprint), created_ms }
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
