//! Catalog searches (`GET /v1/tickets?q=`) remembered by the ids they found.
//!
//! Full-text matching is Postgres's (`websearch_to_tsquery` over the GIN
//! index); this keeps its answers. Which tickets match a query changes only
//! when a ticket is added (names are fixed, nothing is deleted), so an answer
//! stays valid while [`TicketCache::generation`] stays the same; the stock of
//! each ticket is read from the cache at every request, as for the plain listing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use uuid::Uuid;

use super::{Ticket, TicketCache, store};
use crate::cursor::Cursor;

/// Most searches remembered; past that the memory starts over.
const CAPACITY: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    q: String,
    after: Option<Cursor>,
    limit: i64,
}

/// The ids a search found, and the cache generation they hold for.
struct Answer {
    generation: u64,
    ids: Arc<[Uuid]>,
}

/// Search answers by query, page position and size.
#[derive(Default)]
pub struct SearchCache {
    answers: Mutex<HashMap<Key, Answer>>,
}

impl SearchCache {
    /// Up to `limit` tickets matching `q` after `after`, in catalog order.
    pub async fn search(
        &self,
        tickets: &TicketCache,
        db: &PgPool,
        q: &str,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Vec<Arc<Ticket>>, sqlx::Error> {
        let key = Key { q: q.to_owned(), after, limit };
        let generation = tickets.generation();
        if let Some(found) = self.remembered(&key, generation, tickets) {
            return Ok(found);
        }
        let rows = store::list(db, after, Some(q), limit).await?;
        let ids: Arc<[Uuid]> = rows.iter().map(|t| t.id).collect();
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        if answers.len() >= CAPACITY {
            answers.clear();
        }
        answers.insert(key, Answer { generation, ids });
        Ok(rows.into_iter().map(Arc::new).collect())
    }

    /// The remembered answer with today's stock; none if it is stale or a ticket is not cached yet.
    fn remembered(&self, key: &Key, generation: u64, tickets: &TicketCache) -> Option<Vec<Arc<Ticket>>> {
        let ids = {
            let answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
            let answer = answers.get(key)?;
            (answer.generation == generation).then(|| answer.ids.clone())?
        };
        ids.iter().map(|id| tickets.get(id)).collect()
    }
}
