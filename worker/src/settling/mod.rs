//! Settling an owned shard: a [`runner`] per shard pulls batches ([`pull`]), settles each in
//! one transaction behind the fence check (generic over the [`command_kind`]: orders and
//! sign-ups), together with the other shards' batches that are ready ([`combine`]), acks
//! them after the commit ([`acks`]) and gives up on poison through [`dead_letter`].

pub mod acks;
pub mod combine;
pub mod command_kind;
pub mod dead_letter;
pub mod pull;
pub mod runner;
