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

use super::{Ticket, store};
use crate::cursor::Cursor;

/// How long an id that Postgres did not know is answered 404 without asking again.
const NEGATIVE_TTL: Duration = Duration::from_secs(1);

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
#[derive(Default)]
pub struct TicketCache {
    tickets: RwLock<Catalog>,
    unknown: Mutex<HashMap<Uuid, Instant>>,
    generation: AtomicU64,
}

/// Every ticket, by id and in catalog order.
#[derive(Default)]
struct Catalog {
    by_id: HashMap<Uuid, Arc<Ticket>>,
    /// `(createdAt, id)`, the keyset order of `GET /v1/tickets`; it never changes for a ticket.
    in_order: BTreeSet<(DateTime<Utc>, Uuid)>,
}

impl TicketCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached ticket, if any; never touches Postgres.
    pub fn get(&self, id: &Uuid) -> Option<Arc<Ticket>> {
        self.read().by_id.get(id).cloned()
    }

    /// Up to `limit` tickets after `after`, in `(createdAt, id)` order.
    pub fn page(&self, after: Option<Cursor>, limit: usize) -> Vec<Arc<Ticket>> {
        let catalog = self.read();
        let start = after.map_or(Bound::Unbounded, |c| Bound::Excluded((c.at, c.id)));
        catalog
            .in_order
            .range((start, Bound::Unbounded))
            .take(limit)
            .filter_map(|(_, id)| catalog.by_id.get(id).cloned())
            .collect()
    }

    /// Grows by one whenever a ticket the cache did not hold arrives: a search
    /// result computed at one generation holds for as long as it lasts, because
    /// names never change and tickets are never deleted.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The ticket from the cache, or on a miss from Postgres once; unknown ids
    /// are remembered briefly so a flood of them cannot reach the database.
    pub async fn lookup(&self, db: &PgPool, id: &Uuid) -> Result<Option<Arc<Ticket>>, sqlx::Error> {
        if let Some(t) = self.get(id) {
            return Ok(Some(t));
        }
        if self.recently_unknown(id) {
            return Ok(None);
        }
        match store::get(db, id).await? {
            Some(t) => Ok(Some(self.upsert(t))),
            None => {
                self.unknown.lock().unwrap_or_else(|e| e.into_inner()).insert(*id, Instant::now());
                Ok(None)
            }
        }
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
        let (id, key) = (ticket.id, (ticket.created_at, ticket.id));
        let ticket = Arc::new(ticket);
        let mut catalog = self.write();
        if catalog.by_id.insert(id, ticket.clone()).is_none() {
            catalog.in_order.insert(key);
            self.generation.fetch_add(1, Ordering::AcqRel);
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
