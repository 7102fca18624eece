//! Live updates on `GET /v1/events`: the pod's NATS subscription ([`pump`]),
//! the in-process fan-out ([`hub`]), the two transports ([`websocket`], [`sse`]), and
//! the thread they run on ([`lane`]).
//! The design is in `docs/live-updates.md`.

pub mod hub;
pub mod lane;
pub mod pump;
pub mod sse;
pub mod websocket;

pub use hub::{Caps, Hub, Refused, Subscription};
pub use lane::Lane;
