//! The HTTP API of the ticket platform.
//!
//! `POST /v1/orders` validates the request against an in-process ticket cache,
//! claims the `Idempotency-Key` in Redis in one round trip, publishes the
//! command to JetStream and answers 202 only after the PubAck. Order reads come
//! from Postgres (settled) and Redis (pending); the catalog from the in-process
//! cache; live updates from the workers' events, fanned out per pod. `POST /v1/users`
//! takes the same path for sign-ups, claimed on their id. See
//! `README.md` for the whole path.

pub mod accept;
pub mod auth;
pub mod claim;
pub mod claims_watch;
pub mod client_ip;
pub mod conditional;
pub mod config;
pub mod connections;
pub mod cursor;
pub mod dead_letters;
pub mod error;
pub mod events;
pub mod extract;
pub mod gauges;
pub mod jetstream;
pub mod middleware;
pub mod orders;
pub mod protect;
pub mod recall;
pub mod redis_link;
pub mod request_id;
pub mod routes;
pub mod server;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tickets;
pub mod users;

pub use config::{Config, TokenCommand};
pub use error::ApiError;
pub use routes::app;
pub use server::{Server, run, shutdown_signal};
pub use startup::StartError;
pub use state::AppState;
