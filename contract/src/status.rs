//! Status and reason enums, serialised as the SCREAMING_CASE strings of the API.

use serde::{Deserialize, Serialize};

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Accepted and durable, not yet settled by a worker.
    Pending,
    /// Settled: stock was granted.
    Confirmed,
    /// Settled: no stock was granted; see the reason.
    Rejected,
}

/// Why an order was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderReason {
    /// Nothing was left.
    SoldOut,
    /// Some stock was left, but less than the quantity asked for.
    InsufficientStock,
    /// The command could not be applied (unknown ticket, quantity out of range).
    Invalid,
}

/// Where a sign-up stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserStatus {
    /// Accepted and durable, not yet settled.
    Pending,
    /// Stored.
    Created,
    /// Refused; see the reason.
    Rejected,
}

/// Why a sign-up was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserReason {
    /// Another user already holds this email (case-insensitive).
    DuplicateEmail,
}

macro_rules! db_text {
    ($ty:ty { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $ty {
            /// The text stored in Postgres and sent on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),* }
            }
            /// Parses the stored text.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)* _ => None }
            }
        }
    };
}

db_text!(OrderStatus { Pending => "PENDING", Confirmed => "CONFIRMED", Rejected => "REJECTED" });
db_text!(OrderReason { SoldOut => "SOLD_OUT", InsufficientStock => "INSUFFICIENT_STOCK", Invalid => "INVALID" });
db_text!(UserStatus { Pending => "PENDING", Created => "CREATED", Rejected => "REJECTED" });
db_text!(UserReason { DuplicateEmail => "DUPLICATE_EMAIL" });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_matches_serde() {
        for s in [OrderStatus::Pending, OrderStatus::Confirmed, OrderStatus::Rejected] {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        for r in [OrderReason::SoldOut, OrderReason::InsufficientStock, OrderReason::Invalid] {
            assert_eq!(OrderReason::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.as_str()));
        }
        assert_eq!(UserReason::parse("DUPLICATE_EMAIL"), Some(UserReason::DuplicateEmail));
        assert_eq!(OrderStatus::parse("nope"), None);
    }
}
