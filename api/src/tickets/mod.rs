//! Tickets: the catalog rows in Postgres and the in-process cache that the
//! order hot path and the catalog reads are served from.

pub mod cache;
pub mod model;
pub mod query;
pub mod refresh;
pub mod search;
pub mod store;

pub use cache::TicketCache;
pub use model::{NewTicket, Ticket};
pub use search::SearchCache;
