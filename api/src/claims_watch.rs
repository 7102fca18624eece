//! Whether the Redis claims can be trusted to be complete: the epoch marker.
//!
//! A claim missing from Redis usually means a brand-new key. It can also mean
//! that Redis lost its data (a restart without persistence, a failover,
//! `FLUSHALL`), or that the claim was never written because Redis was
//! unreachable when the order was accepted. Postgres answers for every settled
//! order (see [`crate::recall`]); what neither Redis nor Postgres can tell is an
//! order accepted but not yet settled. Only the sold-out refusal depends on
//! that: a key without a claim on a sold-out ticket gets `409 SOLD_OUT` with
//! no publish, which would be wrong for a key whose order waits in the stream.
//!
//! So each api pod keeps one bit, *claims in doubt*:
//! - **Redis lost its data.** At start a pod writes a random epoch to
//!   `tps:epoch` if absent and remembers the value it finds; every
//!   [`TICK`] it reads it again. Gone or changed means Redis lost its data:
//!   `tps_api_redis_data_lost_total` counts it and a warning is logged.
//! - **Redis was unreachable** from this pod (a request served without it, or a
//!   failed tick). When Redis answers again, the pod announces the gap in
//!   `tps:claims-gap` (ms), which every pod reads on its next tick, so a gap
//!   seen by one pod puts them all in doubt.
//!
//! From a gap on, claims are in doubt until every order published before the
//! gap's end is settled: the pod notes the ORDERS stream's last sequence once
//! Redis answers again, and clears the doubt when every shard consumer has
//! acknowledged past it (or has nothing pending). The workers ack only after
//! the Postgres commit, so from then on a key missing from both Redis and
//! Postgres has no order, and the sold-out refusal is safe again. While in
//! doubt, a claimless key on a sold-out ticket that Postgres does not know gets
//! 503 + `Retry-After` (the api cannot tell yet), never `409 SOLD_OUT`; its retry
//! gets the right answer once the backlog from before the gap is settled
//! (usually seconds). Keys on tickets that are not sold out take the full path
//! as always (claim, publish and lookup), where a duplicate PubAck recognises an
//! order still in the stream.

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use redis::Script;
use tps_contract::subject::{ORDERS_STREAM, StreamNames};

use crate::redis_link::RedisLink;
use crate::telemetry::metrics;

/// How often a pod checks the epoch and the gap marker.
pub const TICK: Duration = Duration::from_millis(500);
/// The epoch marker.
pub const EPOCH_KEY: &str = "tps:epoch";
/// The end (ms since the Unix epoch) of the latest gap any pod announced.
pub const GAP_KEY: &str = "tps:claims-gap";
/// How long an announced gap stays readable for pods that start later.
const GAP_TTL_MS: u64 = 10 * 60 * 1000;

/// The shared verdict, read on the hot path (two atomics).
#[derive(Debug)]
pub struct ClaimsWatch {
    in_doubt: AtomicBool,
    /// When this pod last served a request without Redis (ms since the Unix epoch).
    degraded_at_ms: AtomicI64,
}

impl Default for ClaimsWatch {
    fn default() -> Self {
        Self { in_doubt: AtomicBool::new(false), degraded_at_ms: AtomicI64::new(0) }
    }
}

impl ClaimsWatch {
    /// Whether a key without a claim may still have an unsettled order.
    pub fn in_doubt(&self) -> bool {
        self.in_doubt.load(Ordering::Relaxed)
    }

    /// This pod served a request without Redis: its claims are incomplete from now on.
    pub fn note_degraded(&self) {
        self.degraded_at_ms.store(now_ms(), Ordering::Relaxed);
        self.in_doubt.store(true, Ordering::Relaxed);
    }

    fn set_in_doubt(&self, doubt: bool) {
        if self.in_doubt.swap(doubt, Ordering::Relaxed) != doubt {
            if doubt {
                tracing::warn!(
                    "redis claims in doubt: claimless keys on sold-out tickets get 503 until settled"
                );
            } else {
                tracing::info!("redis claims trusted again: every order from before the gap is settled");
            }
        }
        metrics().claims_in_doubt.set(i64::from(doubt));
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

// KEYS[1] the epoch, KEYS[2] the gap marker.
// ARGV: a fresh epoch (written if none), a gap end to announce (0: none), the marker's ttl (ms).
// Returns {epoch, 1 if it was just written, the latest gap end announced}.
const TICK_LUA: &str = r#"
local e = redis.call('GET', KEYS[1])
local created = 0
if not e then
  redis.call('SET', KEYS[1], ARGV[1])
  e = ARGV[1]
  created = 1
end
local g = tonumber(redis.call('GET', KEYS[2]) or '0')
local announce = tonumber(ARGV[2])
if announce > g then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  g = announce
end
return {e, created, tostring(g)}
"#;

static TICK_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(TICK_LUA));

/// The watcher's own memory.
#[derive(Debug, Default)]
struct Memory {
    /// The epoch this pod last read.
    known: Option<String>,
    /// The latest gap end known (ms).
    gap_end: i64,
    /// The gap end whose orders are known to be settled.
    cleared: i64,
    /// The ORDERS stream's last sequence, read after the gap `gap_end`.
    gap_seq: Option<(i64, u64)>,
    /// The last `degraded_at_ms` already announced.
    announced: i64,
    /// A loss detected here, to announce on the next tick.
    lost_at: i64,
}

/// Checks every [`TICK`], forever.
pub async fn watch_forever(
    watch: Arc<ClaimsWatch>,
    redis: RedisLink,
    js: jetstream::Context,
    names: StreamNames,
    shards: u32,
) {
    let mut memory = Memory::default();
    metrics().claims_in_doubt.set(0);
    // Not connected yet at start is not a gap: nothing was accepted without Redis (if
    // something is, the request itself notes it).
    while !redis.wait_connected(Duration::from_secs(1)).await {}
    loop {
        tick(&watch, &redis, (&js, &names), shards, &mut memory).await;
        tokio::time::sleep(TICK).await;
    }
}

async fn tick(
    watch: &ClaimsWatch,
    redis: &RedisLink,
    (js, names): (&jetstream::Context, &StreamNames),
    shards: u32,
    m: &mut Memory,
) {
    let now = now_ms();
    let degraded_at = watch.degraded_at_ms.load(Ordering::Relaxed);
    // A gap ends now if this pod was without Redis since the last announcement.
    let announce = if degraded_at > m.announced || m.lost_at > 0 { now } else { 0 };
    let fresh = uuid::Uuid::new_v4().to_string();
    let mut invocation = TICK_SCRIPT.prepare_invoke();
    invocation.key(EPOCH_KEY).key(GAP_KEY).arg(&fresh).arg(announce).arg(GAP_TTL_MS);
    let answer: Result<(String, i64, String), _> =
        redis.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await;
    let (epoch, created, gap) = match answer {
        Ok(answer) => answer,
        Err(e) => {
            // Unreachable: whatever is accepted meanwhile has no claim.
            tracing::debug!(error = %e, "epoch check without redis");
            watch.degraded_at_ms.store(now, Ordering::Relaxed);
            watch.set_in_doubt(true);
            return;
        }
    };
    if announce > 0 {
        m.announced = degraded_at;
        m.lost_at = 0;
        m.gap_end = m.gap_end.max(announce);
    }
    if let Some(known) = &m.known
        && (created == 1 || *known != epoch)
    {
        metrics().redis_data_lost.inc();
        tracing::warn!(
            was = %known, now = %epoch,
            "redis lost its data (the epoch marker vanished or changed): idempotency claims and pending \
             records are gone; keys are answered from Postgres and JetStream until the backlog is settled"
        );
        m.gap_end = m.gap_end.max(now);
        m.lost_at = now;
    }
    m.known = Some(epoch);
    m.gap_end = m.gap_end.max(gap.parse().unwrap_or(0));
    // A request served without Redis since this tick began is a gap the next tick announces:
    // the doubt it raised must not be cleared meanwhile.
    let quiet = || watch.degraded_at_ms.load(Ordering::Relaxed) == degraded_at;
    if m.gap_end <= m.cleared {
        if quiet() {
            watch.set_in_doubt(false);
        }
        return;
    }
    watch.set_in_doubt(true);
    // Every order published before the gap ended must be settled before claims are trusted.
    let seq = match m.gap_seq {
        Some((gap_end, seq)) if gap_end == m.gap_end => seq,
        _ => match last_sequence(js, names).await {
            Some(seq) => {
                m.gap_seq = Some((m.gap_end, seq));
                seq
            }
            None => return,
        },
    };
    if settled_past(js, names, shards, seq).await {
        m.cleared = m.gap_end;
        if quiet() {
            watch.set_in_doubt(false);
        }
    }
}

async fn last_sequence(js: &jetstream::Context, names: &StreamNames) -> Option<u64> {
    let mut stream = js.get_stream(names.stream(ORDERS_STREAM)).await.ok()?;
    Some(stream.info().await.ok()?.state.last_sequence)
}

/// Whether every shard consumer of ORDERS has acknowledged everything up to `seq`.
async fn settled_past(js: &jetstream::Context, names: &StreamNames, shards: u32, seq: u64) -> bool {
    let Ok(stream) = js.get_stream_no_info(names.stream(ORDERS_STREAM)).await else { return false };
    for shard in 0..shards {
        let Ok(info) = stream.consumer_info(names.consumer(ORDERS_STREAM, shard)).await else { return false };
        let idle = info.num_pending == 0 && info.num_ack_pending == 0;
        if !idle && info.ack_floor.stream_sequence < seq {
            return false;
        }
    }
    true
}
