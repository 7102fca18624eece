//! A keyed rate limiter: GCRA (the algorithm of `governor`), one timestamp per key.
//!
//! Written here rather than pulled in because it is forty lines and the keys
//! need care: the per-user limiter sees up to 100,000 users in a flash sale, so
//! the map is sharded (no global lock on the hot path) and keys that have fully
//! recovered are swept, so memory follows the active users, not all users ever.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 64;

/// At most `per_second` requests a second per key, with bursts of `burst`.
pub struct RateLimiter<K> {
    /// Time between two requests at the sustained rate, in nanoseconds.
    interval_ns: u64,
    /// How far ahead of now a key's schedule may run: the burst.
    tolerance_ns: u64,
    epoch: Instant,
    hasher: RandomState,
    /// Per key, the "theoretical arrival time" of its next request (ns since `epoch`).
    shards: Vec<Mutex<HashMap<K, u64>>>,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// A limiter of `per_second` (> 0) with bursts of `burst` (at least 1).
    pub fn new(per_second: u32, burst: u32) -> Self {
        let interval_ns = 1_000_000_000 / u64::from(per_second.max(1));
        Self {
            interval_ns,
            tolerance_ns: interval_ns * u64::from(burst.max(1) - 1),
            epoch: Instant::now(),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Counts one request of `key`; `Err(wait)` when it is over its limit.
    pub fn check(&self, key: K) -> Result<(), Duration> {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let shard = &self.shards[self.hasher.hash_one(&key) as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let tat = map.get(&key).copied().unwrap_or(now).max(now);
        if tat - now > self.tolerance_ns {
            return Err(Duration::from_nanos(tat - now - self.tolerance_ns));
        }
        map.insert(key, tat + self.interval_ns);
        Ok(())
    }

    /// Drops keys whose schedule is in the past: they are indistinguishable from new ones.
    pub fn sweep(&self) {
        let now = self.epoch.elapsed().as_nanos() as u64;
        for shard in &self.shards {
            shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).retain(|_, tat| *tat > now);
        }
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map(|m| m.len()).unwrap_or(0)).sum()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds_per_key() {
        let limiter = RateLimiter::new(1, 3);
        for _ in 0..3 {
            assert!(limiter.check("a").is_ok());
        }
        let wait = limiter.check("a").unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limiter.check("b").is_ok(), "keys are independent");
    }

    #[test]
    fn recovered_keys_are_swept() {
        let limiter = RateLimiter::new(1_000_000, 1);
        limiter.check(1).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        limiter.sweep();
        assert!(limiter.is_empty());
    }
}
