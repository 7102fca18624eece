//! `ShardRunner`: settles one owned shard until it is told to stop, loses its
//! lease, or finds itself fenced out.
//!
//! Order of effects for every batch: commit, then announce, then ack. A crash
//! anywhere before the ack only causes a redelivery, which the settled rows turn
//! into a no-op (announced again: events are states, so a client loses nothing by
//! a second one); an event is never sent for something not committed. The events go
//! out before the acks, so a pushed outcome never waits behind a batch's acks.

use std::slice;
use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::{self, consumer::PullConsumer, stream::LastRawMessageErrorKind};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tps_contract::subject::StreamNames;

use crate::config::WorkerConfig;
use crate::failpoint::Failpoint;
use crate::metrics;
use crate::ownership::fence::{self, Claim};
use crate::ownership::lease::ShardLease;
use crate::settling::acks::{ack_all, nak_all, progress_all};
use crate::settling::combine::{Combiner, Reply, Settler};
use crate::settling::command_kind::{CommandKind, Delivery, SettleError, give_up_once, settle_once};
use crate::settling::dead_letter::dead_letter;
use crate::settling::pull::{Puller, decode};
use crate::transient::backoff;

/// Bound on one settling transaction; past it the attempt counts as transient.
const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// What every runner of a worker shares.
pub struct SettleContext<K: CommandKind> {
    /// The kind of command settled.
    pub kind: K,
    /// Postgres.
    pub pool: PgPool,
    /// Core NATS, for events.
    pub nats: async_nats::Client,
    /// JetStream, for pulls and dead letters.
    pub js: jetstream::Context,
    /// The worker's configuration.
    pub config: WorkerConfig,
    /// The armed failpoint, if any.
    pub failpoint: Failpoint,
    /// Where the runners' batches meet in shared transactions.
    pub combiner: Combiner<K::Command>,
}

impl<K: CommandKind> SettleContext<K> {
    /// The context of `kind`, with its combiner started (it needs a Tokio runtime). A
    /// combined transaction takes up to four batches' worth of commands.
    pub fn new(
        kind: K,
        pool: PgPool,
        nats: async_nats::Client,
        js: jetstream::Context,
        config: WorkerConfig,
        failpoint: Failpoint,
    ) -> Self {
        let settler = Settler {
            kind: kind.clone(),
            pool: pool.clone(),
            nats: nats.clone(),
            names: config.common.nats_stream_prefix.clone(),
            failpoint,
        };
        let combiner = Combiner::spawn(settler, 4 * config.batch_size as usize);
        Self { kind, pool, nats, js, config, failpoint, combiner }
    }

    /// The stream, subject and consumer names (`NATS_STREAM_PREFIX`).
    pub fn names(&self) -> &StreamNames {
        &self.config.common.nats_stream_prefix
    }
}

/// Why a runner returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerExit {
    /// Asked to stop (shutdown or hand-over) and did, after its batch.
    Stopped,
    /// The lease was not renewed in time; in-flight messages were nak'd.
    LeaseLost,
    /// A settling transaction found a newer token in the fence.
    Fenced,
    /// The fence already held a token at least as large as ours.
    Stale {
        /// The fence's token, to raise the Redis counter past.
        fence: i64,
    },
}

/// Settling stopped before a commit.
enum Halt {
    /// Leave the shard for this reason.
    Exit(RunnerExit),
    /// The batch cannot be applied; isolate it.
    Fatal(String),
}

/// One owned shard.
pub struct ShardRunner<K: CommandKind> {
    shared: Arc<SettleContext<K>>,
    lease: ShardLease,
    /// Finish the current batch, then return.
    stop: CancellationToken,
    /// Stop at once: the lease is gone.
    lost: CancellationToken,
}

impl<K: CommandKind> ShardRunner<K> {
    /// A runner for a freshly acquired lease.
    pub fn new(
        shared: Arc<SettleContext<K>>,
        lease: ShardLease,
        stop: CancellationToken,
        lost: CancellationToken,
    ) -> Self {
        Self { shared, lease, stop, lost }
    }

    fn shard(&self) -> u32 {
        self.lease.shard
    }

    /// Claims the fence, then settles batches until told otherwise. Everything it logs
    /// carries the span `shard_runner{stream, shard, token}`.
    #[tracing::instrument(name = "shard_runner", skip_all, fields(stream = K::STREAM, shard = self.lease.shard, token = self.lease.token))]
    pub async fn run(self) -> RunnerExit {
        if let Err(exit) = self.claim_fence().await {
            return exit;
        }
        let consumer = match self.consumer().await {
            Ok(c) => c,
            Err(exit) => return exit,
        };
        let config = &self.shared.config;
        let mut puller = Puller::new(consumer.clone(), config.batch_size as usize, config.batch_wait());
        let mut attempt = 0;
        // First the messages a previous owner pulled and never acked; again after a failed
        // pull, whose messages may have been delivered to us and lost on the way.
        let mut recover = true;
        loop {
            if self.lost.is_cancelled() {
                return RunnerExit::LeaseLost;
            }
            if self.stop.is_cancelled() {
                return RunnerExit::Stopped;
            }
            if recover {
                if let Err(exit) = self.recover(consumer.clone()).await {
                    return exit;
                }
                recover = false;
            }
            // A pull is never interrupted (see `pull`): it ends within about a second.
            let batch = match puller.next().await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(shard = self.shard(), error = %e, "pull failed; retrying");
                    self.pause(attempt).await;
                    attempt += 1;
                    recover = true;
                    continue;
                }
            };
            attempt = 0;
            if let Some(exit) = self.handle(batch).await {
                return exit;
            }
        }
    }

    /// Writes our token into the fence before anything is settled.
    async fn claim_fence(&self) -> Result<(), RunnerExit> {
        let s = &self.shared;
        for attempt in 0.. {
            match fence::claim(&s.pool, K::STREAM, self.shard(), self.lease.token, &s.config.worker_id).await
            {
                Ok(Claim::Claimed) => return Ok(()),
                Ok(Claim::Stale { fence }) => return Err(RunnerExit::Stale { fence }),
                Err(e) => tracing::warn!(shard = self.shard(), error = %e, "fence claim failed; retrying"),
            }
            if let Some(exit) = self.pause(attempt).await {
                return Err(exit);
            }
        }
        unreachable!("the retry loop only ends by returning")
    }

    async fn consumer(&self) -> Result<PullConsumer, RunnerExit> {
        let name = self.shared.names().consumer(K::STREAM, self.shard());
        let stream = self.shared.names().stream(K::STREAM);
        for attempt in 0.. {
            match self.shared.js.get_consumer_from_stream(&name, &stream).await {
                Ok(c) => return Ok(c),
                Err(e) => tracing::warn!(consumer = name, error = %e, "consumer lookup failed; retrying"),
            }
            if let Some(exit) = self.pause(attempt).await {
                return Err(exit);
            }
        }
        unreachable!("the retry loop only ends by returning")
    }

    /// Sleeps a backoff; returns why to leave if told to during it.
    async fn pause(&self, attempt: u32) -> Option<RunnerExit> {
        tokio::select! {
            _ = self.lost.cancelled() => Some(RunnerExit::LeaseLost),
            _ = self.stop.cancelled() => Some(RunnerExit::Stopped),
            _ = tokio::time::sleep(backoff(attempt)) => None,
        }
    }

    /// Dead-letters what cannot be decoded and settles the rest.
    async fn handle(&self, batch: Vec<jetstream::Message>) -> Option<RunnerExit> {
        if batch.is_empty() {
            return None;
        }
        let (deliveries, undecodable) = decode(&self.shared.kind, batch);
        for bad in undecodable {
            if let Err(e) = dead_letter(
                (&self.shared.js, self.shared.names()),
                K::STREAM,
                self.shard(),
                &bad.message,
                &bad.reason,
                "undecodable",
                None,
            )
            .await
            {
                tracing::warn!(error = %e, "dead letter failed; the message will come back");
                nak_all(&[&bad.message], Some(self.shared.config.nak_delay(1))).await;
            }
        }
        if deliveries.is_empty() {
            return None;
        }
        self.shared.failpoint.before_settle(deliveries.len()).await;
        match self.settle(&deliveries, false).await {
            Ok(settled) => self.finish(&deliveries, settled).await,
            Err(Halt::Exit(exit)) => {
                nak_all(&messages(&deliveries), None).await;
                return Some(exit);
            }
            Err(Halt::Fatal(reason)) => return self.isolate(deliveries, reason).await,
        }
        None
    }

    /// Settles, in stream order and before anything newer, the messages of this shard that
    /// were delivered but never acked: a previous owner died (`kill -9`) holding its batch,
    /// or a pull of ours lost its messages on the way. Without this, later arrivals would be
    /// served while those wait out `ack_wait`, and earlier buyers would find the stock gone.
    ///
    /// They are read from the stream directly (from the consumer's ack floor up to the last
    /// delivered sequence, this shard's subject only) and settled like any batch. They stay
    /// pending on the consumer, which is not ours to ack for someone else's delivery: they
    /// come back after `ack_wait` and are then no-ops that get acked. A message that cannot
    /// be decoded or settled here is left to that redelivery, which dead-letters it.
    async fn recover(&self, mut consumer: PullConsumer) -> Result<(), RunnerExit> {
        let (subject, from, to, cap) = 'info: {
            for attempt in 0.. {
                match consumer.info().await {
                    Ok(info) if info.num_ack_pending == 0 => return Ok(()),
                    Ok(info) => {
                        let subject = if info.config.filter_subject.is_empty() {
                            self.shared.names().shard_subject(K::STREAM, self.shard())
                        } else {
                            info.config.filter_subject.clone()
                        };
                        // Reads are bounded: with WorkQueue retention the range holds only unacked
                        // messages (at most max_ack_pending); with Limits retention it may also hold
                        // many settled ones, which are no-ops but cost a read each.
                        let cap = usize::try_from(info.config.max_ack_pending).ok().filter(|c| *c > 0);
                        let from = info.ack_floor.stream_sequence + 1;
                        break 'info (subject, from, info.delivered.stream_sequence, cap.unwrap_or(20_000));
                    }
                    Err(e) => {
                        tracing::warn!(shard = self.shard(), error = %e, "consumer info failed; retrying")
                    }
                }
                if let Some(exit) = self.pause(attempt).await {
                    return Err(exit);
                }
            }
            unreachable!("the retry loop only ends by returning or breaking")
        };
        let stream = loop {
            match self.shared.js.get_stream_no_info(self.shared.names().stream(K::STREAM)).await {
                Ok(s) => break s,
                Err(e) => tracing::warn!(shard = self.shard(), error = %e, "stream lookup failed; retrying"),
            }
            if let Some(exit) = self.pause(0).await {
                return Err(exit);
            }
        };
        let batch_size = self.shared.config.batch_size as usize;
        let (mut at, mut recovered, mut reads) = (from, 0usize, 0usize);
        while at <= to {
            if reads >= cap {
                tracing::warn!(
                    shard = self.shard(),
                    at,
                    to,
                    reads,
                    "recovery cut short; the rest comes back after ack_wait"
                );
                break;
            }
            let mut chunk = Vec::with_capacity(batch_size);
            while chunk.len() < batch_size && at <= to && reads < cap {
                reads += 1;
                let m = match stream.get_first_raw_message_by_subject(&subject, at).await {
                    Ok(m) => m,
                    Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {
                        at = to + 1;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(shard = self.shard(), at, error = %e, "reading a held message failed; retrying");
                        if let Some(exit) = self.pause(0).await {
                            return Err(exit);
                        }
                        continue;
                    }
                };
                if m.sequence > to {
                    at = to + 1;
                    break;
                }
                at = m.sequence + 1;
                match serde_json::from_slice::<K::Command>(&m.payload) {
                    Ok(command) if self.shared.kind.validate(&command).is_ok() => {
                        chunk.push(Delivery { message: None, seq: m.sequence, delivered: 0, command })
                    }
                    _ => tracing::debug!(
                        shard = self.shard(),
                        seq = m.sequence,
                        "held message left to its redelivery"
                    ),
                }
            }
            recovered += chunk.len();
            self.settle_held(chunk).await?;
        }
        if recovered > 0 {
            metrics::recovered(K::STREAM, recovered);
            tracing::info!(
                shard = self.shard(),
                from,
                to,
                recovered,
                "settled the messages a previous delivery still held"
            );
        }
        Ok(())
    }

    /// Settles held messages (see [`Self::recover`]): no acks; one by one if the chunk fails.
    async fn settle_held(&self, chunk: Vec<Delivery<K::Command>>) -> Result<(), RunnerExit> {
        if chunk.is_empty() {
            return Ok(());
        }
        let failed = match self.settle(&chunk, false).await {
            Ok(settled) => {
                self.announce(settled).await;
                return Ok(());
            }
            Err(Halt::Exit(exit)) => return Err(exit),
            Err(Halt::Fatal(reason)) => reason,
        };
        tracing::warn!(
            shard = self.shard(),
            size = chunk.len(),
            reason = failed,
            "held batch failed; settling one by one"
        );
        for d in &chunk {
            match self.settle(slice::from_ref(d), true).await {
                Ok(settled) => self.announce(settled).await,
                Err(Halt::Exit(exit)) => return Err(exit),
                Err(Halt::Fatal(reason)) => {
                    tracing::warn!(
                        shard = self.shard(),
                        seq = d.seq,
                        reason,
                        "held message left to its redelivery"
                    )
                }
            }
        }
        Ok(())
    }

    /// Settles one message at a time to find the ones that fail on their own.
    async fn isolate(&self, deliveries: Vec<Delivery<K::Command>>, reason: String) -> Option<RunnerExit> {
        if deliveries.len() == 1 {
            return self.fail(&deliveries[0], &reason).await;
        }
        tracing::warn!(shard = self.shard(), size = deliveries.len(), %reason, "batch failed; settling one by one");
        for (i, d) in deliveries.iter().enumerate() {
            match self.settle(slice::from_ref(d), true).await {
                Ok(settled) => self.finish(slice::from_ref(d), settled).await,
                Err(Halt::Fatal(reason)) => {
                    if let Some(exit) = self.fail(d, &reason).await {
                        nak_all(&messages(&deliveries[i + 1..]), None).await;
                        return Some(exit);
                    }
                }
                Err(Halt::Exit(exit)) => {
                    nak_all(&messages(&deliveries[i..]), None).await;
                    return Some(exit);
                }
            }
        }
        None
    }

    /// A message failed on its own: nak it with backoff or, at the limit, give up on it:
    /// settle it final where the kind can (an order ends REJECTED `INVALID`, so its owner
    /// reads an answer), then copy it to DEAD_LETTERS and ack it. A command that cannot even
    /// be stored as rejected is only dead-lettered (a replay after the fix settles it).
    async fn fail(&self, d: &Delivery<K::Command>, reason: &str) -> Option<RunnerExit> {
        let config = &self.shared.config;
        let message = d.message.as_ref()?;
        if d.delivered >= config.max_deliveries {
            let reason = format!("failed {} deliveries: {reason}", d.delivered);
            let (settled, reason) = match self.give_up(d, &reason).await {
                Ok(settled) => (settled, reason),
                Err(Halt::Exit(exit)) => {
                    nak_all(&[message], None).await;
                    return Some(exit);
                }
                Err(Halt::Fatal(e)) => (None, format!("{reason}; not storable as rejected either: {e}")),
            };
            let (settled, settled_as) = settled.map_or((None, None), |(s, label)| (Some(s), Some(label)));
            match dead_letter(
                (&self.shared.js, self.shared.names()),
                K::STREAM,
                self.shard(),
                message,
                &reason,
                "max_deliveries",
                settled_as.as_deref(),
            )
            .await
            {
                Ok(()) => {
                    if let Some(settled) = settled {
                        self.shared.kind.announce(&self.shared.nats, self.shared.names(), settled).await;
                    }
                    return None;
                }
                // If it was settled, its redelivery is a no-op that gets acked (and announced).
                Err(e) => tracing::warn!(error = %e, "dead letter failed; the message will come back"),
            }
        }
        tracing::warn!(
            shard = self.shard(),
            seq = d.seq,
            delivered = d.delivered,
            reason,
            "message failed; nak"
        );
        nak_all(&[message], Some(config.nak_delay(d.delivered))).await;
        None
    }

    /// Settles a command given up on as final ([`CommandKind::give_up`]), retrying
    /// transient errors like [`Self::settle`].
    async fn give_up(
        &self,
        d: &Delivery<K::Command>,
        detail: &str,
    ) -> Result<Option<(K::Settled, String)>, Halt> {
        let s = &self.shared;
        for attempt in 0.. {
            let result = tokio::select! {
                biased;
                _ = self.lost.cancelled() => return Err(Halt::Exit(RunnerExit::LeaseLost)),
                r = tokio::time::timeout(SETTLE_TIMEOUT, give_up_once(&s.kind, &s.pool, self.shard(), self.lease.token, d, detail)) => r,
            };
            let error = match result {
                Ok(Ok(settled)) => return Ok(settled),
                Ok(Err(SettleError::Fenced)) => return Err(Halt::Exit(RunnerExit::Fenced)),
                Ok(Err(SettleError::Fatal(e))) => return Err(Halt::Fatal(e.to_string())),
                Ok(Err(SettleError::Transient(e))) => e.to_string(),
                Err(_) => "giving up timed out".to_owned(),
            };
            metrics::transient_error(K::STREAM);
            tracing::warn!(
                shard = self.shard(),
                attempt,
                error,
                "transient failure while giving up; retrying"
            );
            progress_all(&messages(slice::from_ref(d))).await;
            if let Some(exit) = self.pause(attempt).await {
                return Err(Halt::Exit(exit));
            }
        }
        unreachable!("the retry loop only ends by returning")
    }

    /// Runs the transaction until it commits, retrying transient errors without
    /// burning deliveries (progress acks keep the messages ours meanwhile), in the span
    /// `settle{batch, first_seq}`. The batch goes into a combined transaction with other
    /// shards' batches ([`crate::settling::combine`]) unless `alone`, or unless a combined
    /// one failed. `Ok(None)`: committed and already announced (by the combined transaction);
    /// `Ok(Some)`: committed alone, for the caller to announce.
    #[tracing::instrument(name = "settle", skip_all, fields(batch = batch.len(), first_seq = batch.first().map(|d| d.seq)))]
    async fn settle(&self, batch: &[Delivery<K::Command>], alone: bool) -> Result<Option<K::Settled>, Halt> {
        for attempt in 0.. {
            let started = Instant::now();
            let attempt_result = tokio::select! {
                biased;
                // Lease gone: stop waiting (a transaction of our own rolls back; a combined
                // one may still commit the batch, behind our fence, which its redelivery
                // then finds settled) and stop at once.
                _ = self.lost.cancelled() => return Err(Halt::Exit(RunnerExit::LeaseLost)),
                r = tokio::time::timeout(SETTLE_TIMEOUT, self.settle_attempt(batch, alone)) => r,
            };
            let error = match attempt_result {
                Ok(Ok(settled)) => {
                    tracing::debug!(
                        attempt,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "batch settled"
                    );
                    metrics::batch_settled(K::STREAM, batch.len(), started.elapsed());
                    crate::trace::settled(K::STREAM, self.shard(), batch, started);
                    return Ok(settled);
                }
                Ok(Err(SettleError::Fenced)) => {
                    tracing::warn!(
                        shard = self.shard(),
                        token = self.lease.token,
                        "fenced out; leaving the shard"
                    );
                    return Err(Halt::Exit(RunnerExit::Fenced));
                }
                Ok(Err(SettleError::Fatal(e))) => return Err(Halt::Fatal(e.to_string())),
                Ok(Err(SettleError::Transient(e))) => e.to_string(),
                Err(_) => "settling transaction timed out".to_owned(),
            };
            metrics::transient_error(K::STREAM);
            tracing::warn!(shard = self.shard(), attempt, error, "transient failure; keeping the batch");
            progress_all(&messages(batch)).await;
            if let Some(exit) = self.pause(attempt).await {
                return Err(Halt::Exit(exit));
            }
        }
        unreachable!("the retry loop only ends by returning")
    }

    /// One attempt: in the next combined transaction, or alone.
    async fn settle_attempt(
        &self,
        batch: &[Delivery<K::Command>],
        alone: bool,
    ) -> Result<Option<K::Settled>, SettleError> {
        let s = &self.shared;
        if !alone {
            match s.combiner.settle(self.shard(), self.lease.token, batch).await {
                Some(Reply::Settled) => return Ok(None),
                Some(Reply::Fenced) => return Err(SettleError::Fenced),
                Some(Reply::Failed(e)) => return Err(e),
                Some(Reply::Alone) | None => {}
            }
        }
        let settled = settle_once(&s.kind, &s.pool, self.shard(), self.lease.token, batch).await?;
        s.failpoint.after_commit();
        Ok(Some(settled))
    }

    /// Announces what a transaction of our own committed.
    async fn announce(&self, settled: Option<K::Settled>) {
        if let Some(settled) = settled {
            self.shared.kind.announce(&self.shared.nats, self.shared.names(), settled).await;
        }
    }

    /// After the commit (and the failpoint): announce, unless the combined transaction
    /// did, then ack.
    async fn finish(&self, batch: &[Delivery<K::Command>], settled: Option<K::Settled>) {
        self.announce(settled).await;
        let failed = ack_all(&messages(batch)).await;
        if failed > 0 {
            tracing::warn!(
                shard = self.shard(),
                failed,
                "acks not sent; those messages will be redelivered as no-ops"
            );
        }
    }
}

/// The JetStream messages of a batch.
fn messages<C>(batch: &[Delivery<C>]) -> Vec<&jetstream::Message> {
    batch.iter().filter_map(|d| d.message.as_ref()).collect()
}
