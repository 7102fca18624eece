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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        assert_eq!(order_subject(7), "orders.7");
        assert_eq!(user_subject(0), "users.0");
        assert_eq!(dead_letter_subject(ORDERS_STREAM, 3), "deadletter.orders.3");
        assert_eq!(consumer_name(ORDERS_STREAM, 3), "orders-3");
    }
}
