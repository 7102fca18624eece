//! The in-process ticket cache that keeps Postgres off the order hot path.
//!
//! It holds every ticket's metadata and last known stock, and serves the
//! catalog reads as well. Three things feed it: a full load at start, an
//! incremental poll of `tickets.updated_at` (at least every 500 ms, so
//! `available` is never more than 1 s stale), and the workers' `TicketUpdated`
//! events, which arrive within milliseconds of each commit.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tps_contract::TicketUpdated;
use uuid::Uuid;

use super::query::{Filter, Position, Sort};
use super::{Ticket, store};

use crate::telemetry::{gauge_value, metrics};

/// How long an id that Postgres did not know is answered 404 without asking again.
const NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// Postgres lookups of ids the cache does not hold, at once. The cache holds every
/// ticket (loaded at start, polled every few hundred ms), so a miss is almost always
/// an id that does not exist; a flood of random ids gets at most this many queries
/// in flight, and the rest their 404 from the cache.
const MISS_LOOKUPS: usize = 4;

/// How long a miss waits for one of the [`MISS_LOOKUPS`] before it is answered from the cache.
const MISS_WAIT: Duration = Duration::from_millis(100);

/// Default bound of the negative cache.
pub const UNKNOWN_MAX: usize = 10_000;

/// Totals over the cache, as last known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockSummary {
    /// Units still available, summed over every ticket.
    pub available: i64,
    /// Tickets with nothing left.
    pub sold_out: usize,
    /// Tickets known.
    pub tickets: usize,
}

/// Tickets by id, shared by every request.
pub struct TicketCache {
    tickets: RwLock<Catalog>,
    /// Ids Postgres did not know, and when it said so; at most `unknown_max`.
    unknown: Mutex<HashMap<Uuid, Instant>>,
    unknown_max: usize,
    misses: tokio::sync::Semaphore,
    generation: AtomicU64,
}

impl Default for TicketCache {
    fn default() -> Self {
        Self::with_unknown_cap(UNKNOWN_MAX)
    }
}

/// Every ticket, by id and in catalog order.
#[derive(Default)]
struct Catalog {
    by_id: HashMap<Uuid, Arc<Ticket>>,
    /// `(createdAt, id)`, the keyset order of `GET /v1/tickets`; it never changes for a ticket.
    in_order: BTreeSet<(DateTime<Utc>, Uuid)>,
    /// `(priceCents, id)`, the order of `sort=price` and `-price`; prices never change either.
    by_price: BTreeSet<(i64, Uuid)>,
}

impl TicketCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cache that remembers at most `unknown_max` unknown ids (at least 1).
    pub fn with_unknown_cap(unknown_max: usize) -> Self {
        Self {
            tickets: RwLock::default(),
            unknown: Mutex::default(),
            unknown_max: unknown_max.max(1),
            misses: tokio::sync::Semaphore::new(MISS_LOOKUPS),
            generation: AtomicU64::new(0),
        }
    }

    /// The cached ticket, if any; never touches Postgres.
    pub fn get(&self, id: &Uuid) -> Option<Arc<Ticket>> {
        self.read().by_id.get(id).cloned()
    }

    /// Up to `limit` tickets that pass `filter`, after `after`, in `sort` order,
    /// straight from the ordered in-memory indexes (no Postgres). `Relevance`
    /// needs a search and is served by [`crate::tickets::SearchCache`] instead.
    pub fn browse(
        &self,
        filter: &Filter,
        sort: Sort,
        after: Option<Position>,
        limit: usize,
    ) -> Vec<Arc<Ticket>> {
        let catalog = self.read();
        let admitted = |id: &Uuid| catalog.by_id.get(id).filter(|t| filter.admits(t)).cloned();
        match (sort, after) {
            (Sort::Newest, after) => {
                let end = match after {
                    Some(Position::Newest(at, id)) => Bound::Excluded((at, id)),
                    _ => Bound::Unbounded,
                };
                catalog
                    .in_order
                    .range((Bound::Unbounded, end))
                    .rev()
                    .filter_map(|(_, id)| admitted(id))
                    .take(limit)
                    .collect()
            }
            (Sort::Price | Sort::PriceDesc, after) => {
                let after = match after {
                    Some(Position::Price(cents, id)) => Some((cents, id)),
                    _ => None,
                };
                let low =
                    filter.min_price.map_or(Bound::Unbounded, |min| Bound::Included((min, Uuid::nil())));
                let high =
                    filter.max_price.map_or(Bound::Unbounded, |max| Bound::Included((max, Uuid::max())));
                let (low, high) = match sort {
                    Sort::Price => (after.map_or(low, Bound::Excluded), high),
                    _ => (low, after.map_or(high, Bound::Excluded)),
                };
                if !ordered(&low, &high) {
                    return Vec::new();
                }
                let range = catalog.by_price.range((low, high)).filter_map(|(_, id)| admitted(id));
                match sort {
                    Sort::Price => range.take(limit).collect(),
                    _ => range.rev().take(limit).collect(),
                }
            }
            (Sort::Relevance, _) => Vec::new(),
        }
    }

    /// Grows by one whenever a ticket the cache did not hold arrives: a search
    /// result computed at one generation holds for as long as it lasts, because
    /// names never change and tickets are never deleted.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The ticket from the cache, or on a miss from Postgres once; unknown ids
    /// are remembered briefly so repeating one cannot reach the database, and at
    /// most [`MISS_LOOKUPS`] misses query it at once, so a flood of random ones
    /// cannot either.
    pub async fn lookup(&self, db: &PgPool, id: &Uuid) -> Result<Option<Arc<Ticket>>, sqlx::Error> {
        if let Some(t) = self.get(id) {
            return Ok(Some(t));
        }
        if self.recently_unknown(id) {
            metrics().ticket_misses.get("remembered").inc();
            return Ok(None);
        }
        let Ok(Ok(_permit)) = tokio::time::timeout(MISS_WAIT, self.misses.acquire()).await else {
            // Every lookup slot is busy: a flood. The cache is at most one poll behind.
            metrics().ticket_misses.get("shed").inc();
            return Ok(self.get(id));
        };
        // It may have arrived while this one waited.
        if let Some(t) = self.get(id) {
            return Ok(Some(t));
        }
        metrics().ticket_misses.get("postgres").inc();
        match store::get(db, id).await? {
            Some(t) => Ok(Some(self.upsert(t))),
            None => {
                self.remember_unknown(*id);
                Ok(None)
            }
        }
    }

    fn remember_unknown(&self, id: Uuid) {
        let mut unknown = self.unknown.lock().unwrap_or_else(|e| e.into_inner());
        if unknown.len() >= self.unknown_max {
            unknown.retain(|_, at| at.elapsed() < NEGATIVE_TTL);
            // Still mostly fresh: a flood of distinct ids, which remembering would not stop.
            // Forgetting them all keeps each insertion O(1) on average.
            if unknown.len() >= self.unknown_max / 2 {
                unknown.clear();
            }
        }
        unknown.insert(id, Instant::now());
        metrics().ticket_unknown_ids.set(gauge_value(unknown.len()));
    }

    /// Unknown ids remembered now (never more than the cap).
    pub fn unknown_len(&self) -> usize {
        self.unknown.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn recently_unknown(&self, id: &Uuid) -> bool {
        let mut unknown = self.unknown.lock().unwrap_or_else(|e| e.into_inner());
        match unknown.get(id) {
            Some(at) if at.elapsed() < NEGATIVE_TTL => true,
            Some(_) => {
                unknown.remove(id);
                false
            }
            None => false,
        }
    }

    /// Stores a ticket read from Postgres (the source of truth) and returns it.
    pub fn upsert(&self, ticket: Ticket) -> Arc<Ticket> {
        let (id, key, price) = (ticket.id, (ticket.created_at, ticket.id), (ticket.price_cents, ticket.id));
        let ticket = Arc::new(ticket);
        let mut catalog = self.write();
        match catalog.by_id.insert(id, ticket.clone()) {
            None => {
                catalog.in_order.insert(key);
                catalog.by_price.insert(price);
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
            // No route changes a price, but a row edited in Postgres must not leave a stale key.
            Some(old) if old.price_cents != price.0 => {
                catalog.by_price.remove(&(old.price_cents, id));
                catalog.by_price.insert(price);
            }
            Some(_) => {}
        }
        drop(catalog);
        self.unknown.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        ticket
    }

    /// Applies a worker's event; tickets not cached yet are left to the next poll.
    pub fn apply(&self, event: &TicketUpdated) {
        let mut catalog = self.write();
        if let Some(current) = catalog.by_id.get_mut(&event.ticket_id) {
            let available = i32::try_from(event.available).unwrap_or(0).max(0);
            *current = Arc::new(Ticket { available, sold_out: available == 0, ..Ticket::clone(current) });
        }
    }

    /// Stock left over every cached ticket, and how many are sold out (for gauges;
    /// a sum, because a ticket id must never become a metric label).
    pub fn stock(&self) -> StockSummary {
        let tickets = &self.read().by_id;
        StockSummary {
            available: tickets.values().map(|t| i64::from(t.available)).sum(),
            sold_out: tickets.values().filter(|t| t.sold_out).count(),
            tickets: tickets.len(),
        }
    }

    /// How many tickets are cached.
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        self.tickets.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Catalog> {
        self.tickets.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `(low, high)` is a range `BTreeSet::range` accepts (it panics on an inverted one).
fn ordered<K: Ord>(low: &Bound<K>, high: &Bound<K>) -> bool {
    match (low, high) {
        (Bound::Included(a), Bound::Included(b)) => a <= b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => a < b,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_negative_cache_stays_within_its_cap() {
        let cache = TicketCache::with_unknown_cap(100);
        let mut most = 0;
        for _ in 0..10_000 {
            let id = Uuid::new_v4();
            cache.remember_unknown(id);
            assert!(cache.recently_unknown(&id), "just remembered");
            most = most.max(cache.unknown_len());
        }
        assert!(most <= 100, "{most}");
    }
}
