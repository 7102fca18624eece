//! Group commit across shards: the batches that a worker's runners of one kind have ready
//! while a settling transaction runs are settled together, in the next one.
//!
//! Each batch still belongs to the runner that pulled it: that runner holds the shard's
//! lease, and it acks the batch once told it committed. What the runners share is the
//! transaction: one `BEGIN`, one fence check for all their shards, one
//! [`CommandKind::apply`] over all the commands (in stream order, as one batch), one
//! commit and one announce. A transaction costs a dozen round trips and a WAL flush
//! whatever its size. With 16 shards at a few hundred commands a second each, most batches
//! held a handful of commands, and that fixed cost was most of the cost. At most
//! [`IN_FLIGHT`] transactions run at once; the batches that arrive meanwhile wait for the
//! next one, so a lone batch on an idle worker still goes at once.
//!
//! - A shard whose fence no longer holds the runner's token is left out, and its runner is
//!   told [`Reply::Fenced`]. The other shards commit.
//! - A combined transaction that fails (a command that cannot be applied, a transient
//!   error) commits nothing. Each of its runners is told [`Reply::Alone`] and settles its
//!   batch in a transaction of its own, where the retries and the isolation of a poison
//!   command apply as before. A transaction of one batch reports its own error.
//! - Nothing here changes what is settled: the same `apply`, behind the same fence, in
//!   one transaction. A batch that two transactions both hold (a runner gave up waiting
//!   and sent it again) is a no-op in the second, as any redelivery is.

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tps_contract::subject::StreamNames;

use crate::failpoint::Failpoint;
use crate::metrics;
use crate::ownership::fence;
use crate::settling::command_kind::{CommandKind, Delivery, SettleError};

/// Combined transactions running at once, per worker and kind. Two, so that Postgres
/// works on one while the next one's round trips are on the wire; every batch that
/// arrives while both run waits for the next one.
pub const IN_FLIGHT: usize = 2;

/// How a runner's batch fared in a combined transaction.
#[derive(Debug)]
pub enum Reply {
    /// Committed, and announced: the runner acks it.
    Settled,
    /// The shard's fence holds a newer token: the runner leaves the shard.
    Fenced,
    /// The batch was alone in its transaction, which failed with this.
    Failed(SettleError),
    /// The combined transaction failed and committed nothing: settle the batch alone.
    Alone,
}

/// One runner's batch, waiting for a transaction.
struct Part<C> {
    shard: u32,
    token: i64,
    batch: Vec<Delivery<C>>,
    reply: oneshot::Sender<Reply>,
}

/// What a combined transaction needs.
pub struct Settler<K> {
    /// The kind of command settled.
    pub kind: K,
    /// Postgres.
    pub pool: PgPool,
    /// Core NATS, for events.
    pub nats: async_nats::Client,
    /// The stream and subject names.
    pub names: StreamNames,
    /// The armed failpoint, if any (`crash-after-commit` fires after the combined commit).
    pub failpoint: Failpoint,
}

/// A batch's shard and fencing token, and its commands (without their messages: those
/// stay with the runner, which acks them).
pub struct Batch<C> {
    /// The shard the batch was pulled from.
    pub shard: u32,
    /// The runner's fencing token for it.
    pub token: i64,
    /// The commands.
    pub batch: Vec<Delivery<C>>,
}

impl<K: CommandKind> Settler<K> {
    /// Settles `batches` in one transaction. Returns, per batch, whether the fence still held
    /// its token (and so it settled), or the error that rolled it all back. Announces what it
    /// committed.
    pub async fn settle_together(&self, batches: Vec<Batch<K::Command>>) -> Result<Vec<bool>, SettleError> {
        let mut tx = self.pool.begin().await?;
        let claims: Vec<(u32, i64)> = batches.iter().map(|b| (b.shard, b.token)).collect();
        let ours: HashSet<(u32, i64)> = fence::still_ours_all(&mut tx, K::STREAM, &claims).await?;
        let kept: Vec<bool> = batches.iter().map(|b| ours.contains(&(b.shard, b.token))).collect();
        let mut commands: Vec<Delivery<K::Command>> =
            batches.into_iter().zip(&kept).filter(|(_, kept)| **kept).flat_map(|(b, _)| b.batch).collect();
        // One batch in stream order, as a shard's own pull is: where two shards' batches hold
        // the same command id, the earlier in the stream is the one applied.
        commands.sort_by_key(|d| d.seq);
        if commands.is_empty() {
            return Ok(kept);
        }
        let settled = self.kind.apply(&mut tx, &commands).await?;
        tx.commit().await?;
        self.failpoint.after_commit();
        self.kind.announce(&self.nats, &self.names, settled).await;
        Ok(kept)
    }

    /// Runs one combined transaction and answers every runner in it.
    async fn run(&self, parts: Vec<Part<K::Command>>) {
        metrics::transaction_shards(K::STREAM, parts.len());
        let (batches, replies): (Vec<Batch<K::Command>>, Vec<oneshot::Sender<Reply>>) = parts
            .into_iter()
            .map(|p| (Batch { shard: p.shard, token: p.token, batch: p.batch }, p.reply))
            .unzip();
        match self.settle_together(batches).await {
            Ok(kept) => {
                for (reply, kept) in replies.into_iter().zip(kept) {
                    let _ = reply.send(if kept { Reply::Settled } else { Reply::Fenced });
                }
            }
            Err(e) if replies.len() == 1 => {
                let _ = replies.into_iter().next().map(|reply| reply.send(Reply::Failed(e)));
            }
            Err(e) => {
                tracing::debug!(error = %e, batches = replies.len(), "combined settle failed; each batch goes alone");
                for reply in replies {
                    let _ = reply.send(Reply::Alone);
                }
            }
        }
    }
}

/// Where a kind's runners hand their batches in (see the module note).
pub struct Combiner<C> {
    queue: mpsc::UnboundedSender<Part<C>>,
}

impl<C: Clone + Send + Sync + 'static> Combiner<C> {
    /// Starts the combiner of `settler`'s kind: each transaction takes every batch waiting,
    /// up to about `max_commands` commands. It stops when the combiner is dropped.
    pub fn spawn<K: CommandKind<Command = C>>(settler: Settler<K>, max_commands: usize) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(serve(Arc::new(settler), waiting, max_commands.max(1)));
        Self { queue }
    }

    /// Settles `batch` (the shard's, under `token`) in the next combined transaction.
    /// `None`: the combiner is gone, or dropped the batch; settle it alone.
    pub async fn settle(&self, shard: u32, token: i64, batch: &[Delivery<C>]) -> Option<Reply> {
        let (reply, answer) = oneshot::channel();
        let batch = batch.iter().map(Delivery::detached).collect();
        self.queue.send(Part { shard, token, batch, reply }).ok()?;
        answer.await.ok()
    }
}

async fn serve<K: CommandKind>(
    settler: Arc<Settler<K>>,
    mut waiting: mpsc::UnboundedReceiver<Part<K::Command>>,
    max_commands: usize,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // A slot first: while every slot is busy, the batches that arrive wait together.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let Some(first) = waiting.recv().await else { return };
        let mut size = first.batch.len();
        let mut parts = vec![first];
        while size < max_commands {
            match waiting.try_recv() {
                Ok(part) => {
                    size += part.batch.len();
                    parts.push(part);
                }
                Err(_) => break,
            }
        }
        let settler = settler.clone();
        tokio::spawn(async move {
            settler.run(parts).await;
            drop(slot);
        });
    }
}
