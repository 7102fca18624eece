//! What an order's claim binds its `Idempotency-Key` to ([`crate::claim`]): a fingerprint of
//! the body (ticket and quantity), and the PENDING record's fields (buyer, ticket, quantity),
//! which `GET /v1/orders/{id}` reads while the order is unsettled.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::claim::{Body, Record};

/// The body's fingerprint: what must match for a replay.
pub fn fingerprint(ticket_id: &Uuid, quantity: u32) -> String {
    let mut hash = Sha256::new();
    hash.update(ticket_id.as_bytes());
    hash.update(quantity.to_be_bytes());
    hex::encode(&hash.finalize()[..16])
}

/// The claim's body of an order by `user` of `quantity` of `ticket_id`.
pub fn body(user: &str, ticket_id: &Uuid, quantity: u32) -> Body {
    Body {
        fingerprint: fingerprint(ticket_id, quantity),
        fields: vec![
            ("user", user.to_owned()),
            ("ticket", ticket_id.to_string()),
            ("qty", quantity.to_string()),
        ],
    }
}

/// The claim of an order first accepted at `created_ms`.
pub fn record(user: &str, ticket_id: &Uuid, quantity: u32, created_ms: i64) -> Record {
    Record { body: body(user, ticket_id, quantity), created_ms }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_ticket_and_quantity() {
        let t = Uuid::from_u128(1);
        assert_eq!(fingerprint(&t, 1), fingerprint(&t, 1));
        assert_ne!(fingerprint(&t, 1), fingerprint(&t, 2));
        assert_ne!(fingerprint(&t, 1), fingerprint(&Uuid::from_u128(2), 1));
    }

    #[test]
    fn the_body_binds_the_buyer_too() {
        let t = Uuid::from_u128(1);
        assert_eq!(body("alice", &t, 1), body("alice", &t, 1));
        assert_ne!(body("alice", &t, 1), body("bob", &t, 1));
        assert_ne!(body("alice", &t, 1), body("alice", &t, 2));
    }
}
