//! Settling, generic over the kind of command: one transaction per batch,
//! behind the fence check. Orders implement [`CommandKind`]; sign-ups will too.

use std::future::Future;

use async_nats::jetstream;
use serde::de::DeserializeOwned;
use sqlx::{PgConnection, PgPool};

use crate::ownership::fence;
use crate::transient::is_transient;

/// What the shard machinery needs from one kind of command.
pub trait CommandKind: Clone + Send + Sync + 'static {
    /// The JetStream stream holding the commands, e.g. `ORDERS`.
    const STREAM: &'static str;
    /// The decoded command.
    type Command: DeserializeOwned + Clone + Send + Sync + 'static;
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

    /// Settles as final a command the worker gives up on (it failed `max_deliveries`
    /// times on its own), inside a fenced transaction, with `detail` saying why. Must be
    /// idempotent and must not touch stock. `None`: this kind has no such outcome, and the
    /// command only goes to DEAD_LETTERS.
    fn give_up<'a>(
        &'a self,
        _tx: &'a mut PgConnection,
        _delivery: &'a Delivery<Self::Command>,
        _detail: &'a str,
    ) -> impl Future<Output = Result<Option<(Self::Settled, String)>, sqlx::Error>> + Send + 'a {
        async { Ok(None) }
    }

    /// Publishes the events of a committed, acked batch (best effort) and counts outcomes.
    fn announce<'a>(
        &'a self,
        nats: &'a async_nats::Client,
        names: &'a tps_contract::subject::StreamNames,
        settled: Self::Settled,
    ) -> impl Future<Output = ()> + Send + 'a;
}

/// One decoded message of a batch.
#[derive(Debug)]
pub struct Delivery<C> {
    /// The JetStream message, for acks; `None` for a message read from the stream
    /// directly (a previous owner's unacked message, see `shard`), which is not ours to ack.
    pub message: Option<jetstream::Message>,
    /// Its stream sequence: the order of arrival on the shard.
    pub seq: u64,
    /// How many times it has been delivered, this time included.
    pub delivered: i64,
    /// The command.
    pub command: C,
}

impl<C: Clone> Delivery<C> {
    /// A copy of the command and its place in the stream, without the message (which
    /// stays with the runner that acks it).
    pub fn detached(&self) -> Self {
        Self { message: None, seq: self.seq, delivered: self.delivered, command: self.command.clone() }
    }
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

/// Begin, check the fence, give up on one command (see [`CommandKind::give_up`]), commit.
/// `Ok(None)`: the kind has no final outcome for it.
pub async fn give_up_once<K: CommandKind>(
    kind: &K,
    pool: &PgPool,
    shard: u32,
    token: i64,
    delivery: &Delivery<K::Command>,
    detail: &str,
) -> Result<Option<(K::Settled, String)>, SettleError> {
    let mut tx = pool.begin().await?;
    if !fence::still_ours(&mut tx, K::STREAM, shard, token).await? {
        return Err(SettleError::Fenced);
    }
    let settled = kind.give_up(&mut tx, delivery, detail).await?;
    tx.commit().await?;
    Ok(settled)
}
