//! Settling, generic over the kind of command: one transaction per batch,
//! behind the fence check. Orders implement [`CommandKind`]; sign-ups will too.

use std::future::Future;

use async_nats::jetstream;
use serde::de::DeserializeOwned;
use sqlx::{PgConnection, PgPool};

use crate::fence;
use crate::transient::is_transient;

/// What the shard machinery needs from one kind of command.
pub trait CommandKind: Send + Sync + 'static {
    /// The JetStream stream holding the commands, e.g. `ORDERS`.
    const STREAM: &'static str;
    /// The decoded command.
    type Command: DeserializeOwned + Send + Sync + 'static;
    /// What a committed batch produced, to announce after the ack.
    type Settled: Send + 'static;

    /// Refuses a decoded command that can never be stored; it is dead-lettered at once.
    fn validate(&self, _command: &Self::Command) -> Result<(), String> {
        Ok(())
    }

    /// Applies a batch, in arrival order, inside the settling transaction (the fence is
    /// already checked). Must be idempotent: a command settled before changes nothing.
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        batch: &'a [Delivery<Self::Command>],
    ) -> impl Future<Output = Result<Self::Settled, sqlx::Error>> + Send + 'a;

    /// Publishes the events of a committed, acked batch (best effort) and counts outcomes.
    fn announce<'a>(
        &'a self,
        nats: &'a async_nats::Client,
        settled: Self::Settled,
    ) -> impl Future<Output = ()> + Send + 'a;
}

/// One decoded message of a batch.
#[derive(Debug)]
pub struct Delivery<C> {
    /// The JetStream message, for acks.
    pub message: jetstream::Message,
    /// Its stream sequence: the order of arrival on the shard.
    pub seq: u64,
    /// How many times it has been delivered, this time included.
    pub delivered: i64,
    /// The command.
    pub command: C,
}

/// Why a settling transaction did not commit.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// The fence holds a newer token: another worker owns the shard now.
    #[error("fenced out: the shard has a newer owner")]
    Fenced,
    /// Worth retrying as is (see [`crate::transient`]).
    #[error("transient: {0}")]
    Transient(sqlx::Error),
    /// Something in the batch cannot be applied.
    #[error("{0}")]
    Fatal(sqlx::Error),
}

impl From<sqlx::Error> for SettleError {
    fn from(e: sqlx::Error) -> Self {
        if is_transient(&e) { SettleError::Transient(e) } else { SettleError::Fatal(e) }
    }
}

/// Begin, check the fence, apply, commit. Dropping the future before the commit rolls back.
pub async fn settle_once<K: CommandKind>(
    kind: &K,
    pool: &PgPool,
    shard: u32,
    token: i64,
    batch: &[Delivery<K::Command>],
) -> Result<K::Settled, SettleError> {
    let mut tx = pool.begin().await?;
    if !fence::still_ours(&mut tx, K::STREAM, shard, token).await? {
        return Err(SettleError::Fenced);
    }
    let settled = kind.apply(&mut tx, batch).await?;
    tx.commit().await?;
    Ok(settled)
}
