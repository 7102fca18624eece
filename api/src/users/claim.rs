//! Claiming a sign-up id in Redis through the one claim script ([`crate::claim`]).
//! The claim holds the body's fingerprint, so the same id with another body is a
//! conflict, and while it lives it is also the PENDING record that
//! `GET /v1/users/{id}` reads.

use uuid::Uuid;

use crate::claim::Outcome;
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

/// Claims the sign-up's id.
pub async fn claim(
    redis: &RedisLink,
    id: &Uuid,
    fingerprint: &str,
    now_ms: i64,
    ttl_secs: u64,
) -> Result<Claim, RedisUnavailable> {
    let claim = crate::claim::Claim {
        key: super::signup_key(id),
        fingerprint,
        now_ms,
        ttl_secs,
        // A new sign-up is always accepted: there is no stock to run out of.
        refuse_new: false,
        fields: &[],
        index: None,
    };
    Ok(match crate::claim::claim(redis, &claim).await? {
        Outcome::New { created_ms } => Claim::New { created_ms },
        Outcome::Replay { created_ms } => Claim::Replay { created_ms },
        Outcome::Conflict => Claim::Conflict,
        Outcome::Refused => unreachable!("a sign-up claim never asks to refuse a new id"),
    })
}

/// Writes the claim of a sign-up whose body is known from Postgres or JetStream
/// (Redis had lost it, or a claim was just made with another body). Best effort.
pub async fn remember(redis: &RedisLink, id: &Uuid, fingerprint: &str, created_ms: i64, ttl_secs: u64) {
    crate::claim::remember(redis, super::signup_key(id), fingerprint.to_owned(), created_ms, &[], ttl_secs)
        .await;
}

/// Marks a claim whose publish failed: a retry counts as new, and it is not shown as PENDING.
pub async fn mark_failed(redis: &RedisLink, id: &Uuid) {
    crate::claim::mark_failed(redis, super::signup_key(id)).await;
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
