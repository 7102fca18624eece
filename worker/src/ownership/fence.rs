//! The fencing token in Postgres (`shard_fences`): the last word on who owns a shard.
//!
//! A new owner raises the row to its token before it settles anything; every
//! settling transaction first updates the row *where the token is still ours*.
//! That update also locks the row until commit, so a new owner's claim waits for
//! an old owner's transaction in flight and every later one of the old owner's
//! finds 0 rows: a stale owner can never commit.

use std::collections::HashSet;

use sqlx::{PgConnection, PgPool};

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The row now holds our token.
    Claimed,
    /// The row already holds this token or a larger one (Redis lost its counter).
    Stale {
        /// The token the row holds.
        fence: i64,
    },
}

/// Raises the fence of `stream`/`shard` to `token` if it is larger than the current one.
pub async fn claim(
    pool: &PgPool,
    stream: &str,
    shard: u32,
    token: i64,
    owner: &str,
) -> Result<Claim, sqlx::Error> {
    let raised = sqlx::query(
        "INSERT INTO shard_fences (stream, shard, token, owner) VALUES ($1, $2, $3, $4)
         ON CONFLICT (stream, shard) DO UPDATE SET token = EXCLUDED.token, owner = EXCLUDED.owner
         WHERE shard_fences.token < EXCLUDED.token",
    )
    .bind(stream)
    .bind(shard as i32)
    .bind(token)
    .bind(owner)
    .execute(pool)
    .await?
    .rows_affected();
    if raised == 1 {
        return Ok(Claim::Claimed);
    }
    let fence: i64 = sqlx::query_scalar("SELECT token FROM shard_fences WHERE stream = $1 AND shard = $2")
        .bind(stream)
        .bind(shard as i32)
        .fetch_one(pool)
        .await?;
    Ok(Claim::Stale { fence })
}

/// Inside a settling transaction: whether `token` still owns the shard. Locks the
/// fence row until the transaction ends (see the module note).
pub async fn still_ours(
    tx: &mut PgConnection,
    stream: &str,
    shard: u32,
    token: i64,
) -> Result<bool, sqlx::Error> {
    let rows =
        sqlx::query("UPDATE shard_fences SET token = token WHERE stream = $1 AND shard = $2 AND token = $3")
            .bind(stream)
            .bind(shard as i32)
            .bind(token)
            .execute(tx)
            .await?
            .rows_affected();
    Ok(rows == 1)
}

/// Inside a settling transaction of several shards' batches: the claims of `claims`
/// (shard, token) whose token the fence still holds, in one statement. Locks their fence
/// rows until the transaction ends, as [`still_ours`] does for one. A claim with an older
/// token of a shard that a newer claim in the same call holds is not returned.
pub async fn still_ours_all(
    tx: &mut PgConnection,
    stream: &str,
    claims: &[(u32, i64)],
) -> Result<HashSet<(u32, i64)>, sqlx::Error> {
    let shards: Vec<i32> = claims.iter().map(|(shard, _)| *shard as i32).collect();
    let tokens: Vec<i64> = claims.iter().map(|(_, token)| *token).collect();
    let ours: Vec<(i32, i64)> = sqlx::query_as(
        "UPDATE shard_fences f SET token = f.token
         FROM UNNEST($2::int[], $3::bigint[]) AS o(shard, token)
         WHERE f.stream = $1 AND f.shard = o.shard AND f.token = o.token
         RETURNING f.shard, f.token",
    )
    .bind(stream)
    .bind(shards)
    .bind(tokens)
    .fetch_all(tx)
    .await?;
    Ok(ours.into_iter().map(|(shard, token)| (shard as u32, token)).collect())
}
