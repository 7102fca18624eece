//! Events: what workers publish on core NATS after a commit, and what the api
//! pushes to clients over WebSocket or SSE.
//!
//! A message on an event subject holds one event (a JSON object) or several (a JSON
//! array of them). Workers send one array per settled batch, at most
//! [`MAX_EVENTS_PER_MESSAGE`] events each, so that NATS and every api pod handle one
//! message per batch instead of one per order; readers take both shapes
//! ([`decode_events`]), so a worker of the previous release is still understood.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::status::{OrderReason, OrderStatus, UserReason, UserStatus};

/// An order as clients see it (`GET /v1/orders/{id}` and the pushed update).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    /// Order id.
    pub id: Uuid,
    /// Where it stands.
    pub status: OrderStatus,
    /// Why it was rejected, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<OrderReason>,
    /// The ticket.
    pub ticket_id: Uuid,
    /// How many.
    pub quantity: u32,
    /// When the api accepted it.
    pub created_at: DateTime<Utc>,
    /// When the worker committed its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_at: Option<DateTime<Utc>>,
}

/// Published on [`crate::subject::ORDER_EVENTS`] after the settling transaction commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderUpdated {
    /// The owner; the api delivers the event to this user's connections only.
    pub user_id: String,
    /// The order after the change.
    pub order: OrderView,
}

/// Published on [`crate::subject::TICKET_EVENTS`] whenever a ticket's stock changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketUpdated {
    /// The ticket.
    pub ticket_id: Uuid,
    /// Stock left after the commit.
    pub available: i64,
    /// `available == 0`.
    pub sold_out: bool,
}

/// Published on [`crate::subject::USER_EVENTS`] when a sign-up is settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserUpdated {
    /// The sign-up id.
    pub id: Uuid,
    /// The outcome.
    pub status: UserStatus,
    /// Why it was rejected, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<UserReason>,
}

/// Most events in one message: about 300 bytes each, so a message stays under 100 KiB,
/// far below NATS's 1 MiB payload limit.
pub const MAX_EVENTS_PER_MESSAGE: usize = 256;

/// The events of one message: a JSON object is one event, a JSON array several.
pub fn decode_events<T: DeserializeOwned>(payload: &[u8]) -> Result<Vec<T>, serde_json::Error> {
    match payload.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice(payload),
        _ => serde_json::from_slice(payload).map(|one| vec![one]),
    }
}

/// What a client receives on `GET /v1/events`, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ClientEvent {
    /// One of the caller's own orders changed.
    #[serde(rename = "order.updated")]
    OrderUpdated {
        /// The order after the change.
        order: OrderView,
    },
    /// A ticket's stock changed (broadcast).
    #[serde(rename = "ticket.updated", rename_all = "camelCase")]
    TicketUpdated {
        /// The ticket.
        ticket_id: Uuid,
        /// Stock left.
        available: i64,
        /// `available == 0`.
        sold_out: bool,
    },
}

impl From<TicketUpdated> for ClientEvent {
    fn from(t: TicketUpdated) -> Self {
        ClientEvent::TicketUpdated { ticket_id: t.ticket_id, available: t.available, sold_out: t.sold_out }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_holds_one_event_or_an_array_of_them() {
        let one = TicketUpdated { ticket_id: Uuid::nil(), available: 3, sold_out: false };
        let two = TicketUpdated { ticket_id: Uuid::max(), available: 0, sold_out: true };
        let single = serde_json::to_vec(&one).unwrap();
        assert_eq!(decode_events::<TicketUpdated>(&single).unwrap(), vec![one.clone()]);
        let array = serde_json::to_vec(&[&one, &two]).unwrap();
        assert_eq!(decode_events::<TicketUpdated>(&array).unwrap(), vec![one.clone(), two]);
        let padded = [b" \n".as_slice(), &array].concat();
        assert_eq!(decode_events::<TicketUpdated>(&padded).unwrap().len(), 2);
        assert!(decode_events::<TicketUpdated>(b"[]").unwrap().is_empty());
        assert!(decode_events::<TicketUpdated>(b"[{\"ticketId\": 1}]").is_err(), "a bad element fails");
        assert!(decode_events::<TicketUpdated>(b"").is_err());
        assert!(decode_events::<TicketUpdated>(b"{not json").is_err());
    }

    #[test]
    fn client_events_have_the_contract_shape() {
        let t = ClientEvent::from(TicketUpdated { ticket_id: Uuid::nil(), available: 3, sold_out: false });
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["type"], "ticket.updated");
        assert_eq!(v["available"], 3);
        assert_eq!(v["soldOut"], false);
        assert!(v.get("ticketId").is_some());

        let o = ClientEvent::OrderUpdated {
            order: OrderView {
                id: Uuid::nil(),
                status: OrderStatus::Rejected,
                reason: Some(OrderReason::SoldOut),
                ticket_id: Uuid::nil(),
                quantity: 1,
                created_at: DateTime::from_timestamp(0, 0).unwrap(),
                processed_at: None,
            },
        };
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["type"], "order.updated");
        assert_eq!(v["order"]["status"], "REJECTED");
        assert_eq!(v["order"]["reason"], "SOLD_OUT");
        assert!(v["order"].get("processedAt").is_none());
    }
}
