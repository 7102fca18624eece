//! Stream, subject and consumer names. The operator provisions exactly these.

/// JetStream stream holding order commands on `orders.<shard>`.
pub const ORDERS_STREAM: &str = "ORDERS";
/// JetStream stream holding sign-up commands on `users.<shard>`.
pub const USERS_STREAM: &str = "USERS";
/// JetStream stream holding poison commands on `deadletter.<stream>.<shard>`.
pub const DEAD_LETTER_STREAM: &str = "DEAD_LETTERS";

/// Subject filter of the orders stream.
pub const ORDERS_SUBJECTS: &str = "orders.*";
/// Subject filter of the users stream.
pub const USERS_SUBJECTS: &str = "users.*";
/// Subject filter of the dead-letter stream.
pub const DEAD_LETTER_SUBJECTS: &str = "deadletter.>";

/// Core NATS subject (not JetStream) on which workers publish `order.updated`.
pub const ORDER_EVENTS: &str = "events.orders";
/// Core NATS subject on which workers publish `ticket.updated`.
pub const TICKET_EVENTS: &str = "events.tickets";
/// Core NATS subject on which workers publish `user.updated`.
pub const USER_EVENTS: &str = "events.users";

/// How long JetStream remembers a `Nats-Msg-Id` to drop a duplicate publish.
pub const DUPLICATE_WINDOW_SECS: u64 = 120;

/// The header that carries the command id, for JetStream de-duplication.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// Dead-letter header: why the worker gave up on the message.
pub const DEAD_LETTER_REASON_HEADER: &str = "Tps-Dead-Letter-Reason";
/// Dead-letter header: the subject the command was first published on (replay target).
pub const DEAD_LETTER_SUBJECT_HEADER: &str = "Tps-Original-Subject";
/// Dead-letter header: the stream the command came from.
pub const DEAD_LETTER_STREAM_HEADER: &str = "Tps-Original-Stream";
/// Dead-letter header: the command's sequence in its original stream.
pub const DEAD_LETTER_SEQUENCE_HEADER: &str = "Tps-Original-Sequence";
/// Dead-letter header: how many times the command had been delivered.
pub const DEAD_LETTER_DELIVERIES_HEADER: &str = "Tps-Delivery-Count";
/// Dead-letter header: the command's original `Nats-Msg-Id`, if it had one.
pub const DEAD_LETTER_MSG_ID_HEADER: &str = "Tps-Original-Msg-Id";
/// Dead-letter header: how the worker settled the command when it gave up on it
/// (`REJECTED INVALID` for an order); absent when it could not be settled at all.
pub const DEAD_LETTER_SETTLED_HEADER: &str = "Tps-Settled-As";

/// Subject of the order command for a shard.
pub fn order_subject(shard: u32) -> String {
    format!("orders.{shard}")
}

/// Subject of the sign-up command for a shard.
pub fn user_subject(shard: u32) -> String {
    format!("users.{shard}")
}

/// Subject under which a poison message of `stream`/`shard` is dead-lettered.
pub fn dead_letter_subject(stream: &str, shard: u32) -> String {
    format!("deadletter.{}.{shard}", stream.to_ascii_lowercase())
}

/// Durable consumer name of one shard of a stream, e.g. `orders-3`.
pub fn consumer_name(stream: &str, shard: u32) -> String {
    format!("{}-{shard}", stream.to_ascii_lowercase())
}

/// The stream, subject and consumer names of one deployment: the contract names above,
/// or, with a prefix, the same names made private to one `ThroughputService`, so that
/// several can share one NATS without sharing a stream, a consumer or a subject.
///
/// With the prefix `shop_flash-sale` (the operator's `<namespace>_<name>`): the stream
/// `ORDERS` becomes `shop_flash-sale_ORDERS`, the subject `orders.3` becomes
/// `shop_flash-sale.orders.3`, and the consumer `orders-3` becomes `shop_flash-sale_orders-3`.
/// Without one (`scripts/dev`, tests) every name is the contract name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamNames {
    prefix: Option<String>,
}

impl StreamNames {
    /// The names under `prefix`; an empty prefix gives the contract names. The prefix must
    /// be one subject token: no `.`, `*`, `>` or whitespace.
    pub fn with_prefix(prefix: &str) -> Result<Self, InvalidPrefix> {
        if prefix.is_empty() {
            return Ok(Self::default());
        }
        let bad = |c: char| c == '.' || c == '*' || c == '>' || c == '/' || c == '\\' || c.is_whitespace();
        if prefix.chars().any(bad) || prefix.len() > 128 {
            return Err(InvalidPrefix(prefix.to_owned()));
        }
        Ok(Self { prefix: Some(prefix.to_owned()) })
    }

    /// The prefix, if any.
    pub fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    /// The stream holding what the contract calls `stream` (`ORDERS`, `USERS`, `DEAD_LETTERS`).
    pub fn stream(&self, stream: &str) -> String {
        match &self.prefix {
            Some(p) => format!("{p}_{stream}"),
            None => stream.to_owned(),
        }
    }

    /// The subject (or subject filter) that the contract calls `subject`.
    pub fn subject(&self, subject: &str) -> String {
        match &self.prefix {
            Some(p) => format!("{p}.{subject}"),
            None => subject.to_owned(),
        }
    }

    /// Durable consumer of one shard of the contract stream `stream`.
    pub fn consumer(&self, stream: &str, shard: u32) -> String {
        match &self.prefix {
            Some(p) => format!("{p}_{}", consumer_name(stream, shard)),
            None => consumer_name(stream, shard),
        }
    }

    /// Subject of the command of `shard` in the contract stream `stream` (`orders.<shard>`).
    pub fn shard_subject(&self, stream: &str, shard: u32) -> String {
        self.subject(&format!("{}.{shard}", stream.to_ascii_lowercase()))
    }

    /// Subject of an order command.
    pub fn order_subject(&self, shard: u32) -> String {
        self.subject(&order_subject(shard))
    }

    /// Subject of a sign-up command.
    pub fn user_subject(&self, shard: u32) -> String {
        self.subject(&user_subject(shard))
    }

    /// Subject under which a poison message of the contract stream `stream` is dead-lettered.
    pub fn dead_letter_subject(&self, stream: &str, shard: u32) -> String {
        self.subject(&dead_letter_subject(stream, shard))
    }
}

/// A stream-name prefix that is not one subject token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "stream prefix {0:?} must be one NATS subject token (no '.', '*', '>', '/' or whitespace, at most 128 bytes)"
)]
pub struct InvalidPrefix(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_prefix_the_names_are_the_contract_names() {
        let n = StreamNames::with_prefix("").unwrap();
        assert_eq!(n, StreamNames::default());
        assert_eq!(n.stream(ORDERS_STREAM), "ORDERS");
        assert_eq!(n.subject(ORDERS_SUBJECTS), "orders.*");
        assert_eq!(n.consumer(USERS_STREAM, 2), "users-2");
        assert_eq!(n.order_subject(7), "orders.7");
        assert_eq!(n.shard_subject(USERS_STREAM, 1), "users.1");
        assert_eq!(n.dead_letter_subject(ORDERS_STREAM, 3), "deadletter.orders.3");
    }

    #[test]
    fn a_prefix_makes_every_name_private_and_subjects_disjoint() {
        let n = StreamNames::with_prefix("shop_flash-sale").unwrap();
        assert_eq!(n.stream(ORDERS_STREAM), "shop_flash-sale_ORDERS");
        assert_eq!(n.subject(ORDERS_SUBJECTS), "shop_flash-sale.orders.*");
        assert_eq!(n.consumer(ORDERS_STREAM, 3), "shop_flash-sale_orders-3");
        assert_eq!(n.user_subject(0), "shop_flash-sale.users.0");
        assert_eq!(n.shard_subject(ORDERS_STREAM, 4), "shop_flash-sale.orders.4");
        assert_eq!(n.dead_letter_subject(USERS_STREAM, 1), "shop_flash-sale.deadletter.users.1");
        for bad in ["a.b", "a b", "a*", "a>"] {
            assert!(StreamNames::with_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_follow_the_contract() {
        assert_eq!(order_subject(7), "orders.7");
        assert_eq!(user_subject(0), "users.0");
        assert_eq!(dead_letter_subject(ORDERS_STREAM, 3), "deadletter.orders.3");
        assert_eq!(consumer_name(ORDERS_STREAM, 3), "orders-3");
    }
}
