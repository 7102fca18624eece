//! `Ownership`: keeps the set of shards this worker settles in line with the
//! live membership, every tick (a third of the lease ttl).
//!
//! Each tick: reap runners that ended (releasing their leases), heartbeat,
//! renew every lease (a failed renewal stops that shard at once), then
//! rebalance — acquire free shards that prefer us by rendezvous hashing, acquire
//! shards left free for two ticks whatever they prefer (orphans), and ask
//! runners of shards that prefer another live worker to hand over after their
//! batch. When Redis is unreachable we keep nothing: every shard stops until it
//! is back. The fence makes every one of these choices safe; they only decide
//! how quickly work moves.
//!
//! The parts: [`lease`] (one owner per shard, a Redis key with a ttl and a growing
//! token), [`membership`] (live workers, by heartbeat), [`rendezvous`] (which live
//! worker a shard prefers) and [`fence`] (the token in Postgres, the last word).

pub mod fence;
pub mod lease;
pub mod membership;
pub mod rendezvous;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics;
use crate::ownership::lease::{LeaseTable, ShardLease};
use crate::ownership::membership::Membership;
use crate::ownership::rendezvous::preferred_owner;
use crate::settling::command_kind::CommandKind;
use crate::settling::runner::{RunnerExit, SettleContext, ShardRunner};

/// Ticks a free shard stays free before any worker may take it.
const ORPHAN_TICKS: u32 = 2;
/// How long shutdown waits for runners to finish their batches.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

struct Owned {
    lease: ShardLease,
    stop: CancellationToken,
    lost: CancellationToken,
    task: JoinHandle<RunnerExit>,
}

/// The shards of one stream that this worker owns.
pub struct Ownership<K: CommandKind> {
    shared: Arc<SettleContext<K>>,
    leases: LeaseTable,
    membership: Membership,
    owned: HashMap<u32, Owned>,
    free_ticks: Vec<u32>,
    /// True while Redis answers: `/readyz` reports it.
    healthy: Arc<AtomicBool>,
}

impl<K: CommandKind> Ownership<K> {
    /// Ownership over `leases`, using `membership`, reporting health into `healthy`.
    pub fn new(
        shared: Arc<SettleContext<K>>,
        leases: LeaseTable,
        membership: Membership,
        healthy: Arc<AtomicBool>,
    ) -> Self {
        let shards = shared.config.common.shards as usize;
        Self { shared, leases, membership, owned: HashMap::new(), free_ticks: vec![0; shards], healthy }
    }

    /// Ticks until `shutdown`, then hands every shard back.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.shared.config.tick());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => self.step().await,
            }
        }
        self.drain().await;
    }

    async fn step(&mut self) {
        self.reap().await;
        let members = match self.membership.heartbeat().await {
            Ok(m) => m,
            Err(e) => {
                self.healthy.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, "membership heartbeat failed; stopping every shard until Redis is back");
                self.lose_all();
                return;
            }
        };
        self.healthy.store(true, Ordering::Relaxed);
        self.renew().await;
        self.rebalance(&members).await;
        metrics::shards_owned(K::STREAM, self.owned.len());
    }

    /// Releases the leases of runners that returned.
    async fn reap(&mut self) {
        let done: Vec<u32> =
            self.owned.iter().filter(|(_, o)| o.task.is_finished()).map(|(s, _)| *s).collect();
        for shard in done {
            let Some(o) = self.owned.remove(&shard) else { continue };
            metrics::shard_owned(K::STREAM, shard, false);
            let exit = o.task.await.unwrap_or(RunnerExit::LeaseLost);
            tracing::info!(shard, token = o.lease.token, ?exit, "shard runner ended");
            if let RunnerExit::Stale { fence } = exit {
                // Redis forgot its counter (restart): make the next token beat the fence.
                if let Err(e) = self.leases.raise_counter(shard, fence).await {
                    tracing::warn!(shard, error = %e, "could not raise the token counter");
                }
            }
            if let Err(e) = self.leases.release(&o.lease).await {
                tracing::debug!(shard, error = %e, "release failed; the lease will expire");
            }
        }
    }

    /// Renews every lease still in use; any doubt stops that shard at once.
    async fn renew(&mut self) {
        for (shard, o) in &self.owned {
            if o.lost.is_cancelled() {
                continue;
            }
            let kept = self.leases.renew(&o.lease).await;
            if !matches!(kept, Ok(true)) {
                tracing::warn!(shard, token = o.lease.token, result = ?kept, "lease not renewed; stopping the shard");
                metrics::lease_lost(K::STREAM);
                o.lost.cancel();
            }
        }
    }

    fn lose_all(&mut self) {
        for o in self.owned.values() {
            if !o.lost.is_cancelled() {
                metrics::lease_lost(K::STREAM);
                o.lost.cancel();
            }
        }
    }

    async fn rebalance(&mut self, members: &[String]) {
        let free = match self.leases.free_shards(self.shared.config.common.shards).await {
            Ok(f) => f,
            Err(e) => return tracing::warn!(error = %e, "could not read the leases"),
        };
        let me = self.shared.config.worker_id.clone();
        for (shard, is_free) in (0u32..).zip(free) {
            let prefers_me = preferred_owner(members, K::STREAM, shard) == Some(me.as_str());
            if let Some(o) = self.owned.get(&shard) {
                if !prefers_me && !o.stop.is_cancelled() {
                    tracing::info!(shard, "shard prefers another worker; handing over after this batch");
                    o.stop.cancel();
                }
                continue;
            }
            let ticks = &mut self.free_ticks[shard as usize];
            *ticks = if is_free { *ticks + 1 } else { 0 };
            if is_free && (prefers_me || *ticks > ORPHAN_TICKS) {
                self.acquire(shard).await;
            }
        }
    }

    async fn acquire(&mut self, shard: u32) {
        match self.leases.acquire(shard).await {
            Ok(Some(lease)) => {
                tracing::info!(shard, token = lease.token, "lease acquired");
                metrics::lease_acquired(K::STREAM);
                metrics::shard_owned(K::STREAM, shard, true);
                let (stop, lost) = (CancellationToken::new(), CancellationToken::new());
                let runner = ShardRunner::new(self.shared.clone(), lease.clone(), stop.clone(), lost.clone());
                let task = tokio::spawn(runner.run());
                self.owned.insert(shard, Owned { lease, stop, lost, task });
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(shard, error = %e, "lease acquisition failed"),
        }
    }

    /// Shutdown: every runner finishes (or naks) its batch, then every lease is
    /// released and we leave membership, so others take over within a tick.
    async fn drain(&mut self) {
        for o in self.owned.values() {
            o.stop.cancel();
        }
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        for (shard, o) in self.owned.iter_mut() {
            // Keep renewing while waiting would be nicer; the drain is short next to the ttl.
            if tokio::time::timeout_at(deadline, &mut o.task).await.is_err() {
                tracing::warn!(shard, "runner did not finish in time");
                o.lost.cancel();
            }
        }
        for (shard, o) in self.owned.drain() {
            metrics::shard_owned(K::STREAM, shard, false);
            if let Err(e) = self.leases.release(&o.lease).await {
                tracing::debug!(shard, error = %e, "release failed; the lease will expire");
            }
        }
        metrics::shards_owned(K::STREAM, 0);
        if let Err(e) = self.membership.leave().await {
            tracing::debug!(error = %e, "could not leave membership; it will expire");
        }
    }
}
