//! Catalog searches (`GET /v1/tickets?q=`): Postgres finds and ranks, the cache
//! remembers and serves.
//!
//! Postgres matches names by full text and by trigrams and ranks them
//! (`store::SEARCH_SQL`); this keeps the ids and relevances it found, at most
//! [`MATCHES`] per query. Which tickets match a query changes only when a ticket
//! is added (names are fixed, nothing is deleted), so an answer stays valid while
//! [`TicketCache::generation`] stays the same. Filters, sorts and pages are then
//! applied in memory to the tickets as the cache holds them now, so `available`
//! is as fresh as in the plain listing (≤ 1 s) and a new page costs no query.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use uuid::Uuid;

use super::query::{CatalogQuery, Position, Search, Sort};
use super::{Ticket, TicketCache, store};

/// Most searches remembered; past that the memory starts over.
const CAPACITY: usize = 1024;

/// Most matches a search considers, the most relevant first (as many stores do:
/// a query that matches more is too broad to page through, and sorting or
/// filtering applies to these).
pub const MATCHES: i64 = 1000;

/// The ids a search found with their relevance, best first, and the cache generation they hold for.
struct Answer {
    generation: u64,
    found: Arc<[(Uuid, f32)]>,
}

/// Search answers by query text.
#[derive(Default)]
pub struct SearchCache {
    answers: Mutex<HashMap<Search, Answer>>,
}

impl SearchCache {
    /// Up to `limit` tickets matching `search` and the query's filter, after its
    /// cursor in its sort order, each with its relevance.
    pub async fn search(
        &self,
        tickets: &TicketCache,
        db: &PgPool,
        search: &Search,
        query: &CatalogQuery,
        limit: usize,
    ) -> Result<Vec<(Arc<Ticket>, f32)>, sqlx::Error> {
        let (filter, sort, after) = (&query.filter, query.sort, query.after);
        let found = self.matches(tickets, db, search).await?;
        // Tickets Postgres knows but the cache not yet (a poll away) wait for it.
        let mut hits: Vec<(Arc<Ticket>, f32)> = found
            .iter()
            .filter_map(|(id, score)| tickets.get(id).map(|t| (t, *score)))
            .filter(|(t, _)| filter.admits(t))
            .collect();
        match sort {
            Sort::Relevance => {} // already best first, then by id
            Sort::Price => hits.sort_by_key(|(t, _)| (t.price_cents, t.id)),
            Sort::PriceDesc => hits.sort_by_key(|(t, _)| std::cmp::Reverse((t.price_cents, t.id))),
            Sort::Newest => hits.sort_by_key(|(t, _)| std::cmp::Reverse((t.created_at, t.id))),
        }
        let start = after
            .map_or(0, |after| hits.iter().take_while(|(t, s)| !comes_after(t, *s, sort, after)).count());
        Ok(hits.into_iter().skip(start).take(limit).collect())
    }

    async fn matches(
        &self,
        tickets: &TicketCache,
        db: &PgPool,
        search: &Search,
    ) -> Result<Arc<[(Uuid, f32)]>, sqlx::Error> {
        let generation = tickets.generation();
        {
            let answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(answer) = answers.get(search).filter(|a| a.generation == generation) {
                return Ok(answer.found.clone());
            }
        }
        let found: Arc<[(Uuid, f32)]> = store::search(db, search, MATCHES).await?.into();
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        if answers.len() >= CAPACITY {
            answers.clear();
        }
        answers.insert(search.clone(), Answer { generation, found: found.clone() });
        Ok(found)
    }
}

/// Whether a ticket (with its relevance) comes strictly after `after` in `sort` order.
fn comes_after(t: &Ticket, relevance: f32, sort: Sort, after: Position) -> bool {
    match (after, sort) {
        (Position::Newest(at, id), _) => (t.created_at, t.id) < (at, id),
        (Position::Price(cents, id), Sort::Price) => (t.price_cents, t.id) > (cents, id),
        (Position::Price(cents, id), _) => (t.price_cents, t.id) < (cents, id),
        (Position::Relevance(score, id), _) => relevance < score || (relevance == score && t.id > id),
    }
}
