//! The grant decision, pure: stock is handed out in arrival order.

use std::collections::HashMap;

use tps_contract::{OrderReason, OrderStatus};
use uuid::Uuid;

/// A locked ticket row: what is left and the per-order cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stock {
    /// `tickets.available` when locked.
    pub available: i64,
    /// `tickets.max_per_order`.
    pub max_per_order: i64,
}

/// The decision for one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stock granted.
    Confirmed,
    /// No stock granted, for this reason.
    Rejected(OrderReason),
}

impl Outcome {
    /// The stored status.
    pub fn status(self) -> OrderStatus {
        match self {
            Outcome::Confirmed => OrderStatus::Confirmed,
            Outcome::Rejected(_) => OrderStatus::Rejected,
        }
    }

    /// The stored reason.
    pub fn reason(self) -> Option<OrderReason> {
        match self {
            Outcome::Confirmed => None,
            Outcome::Rejected(r) => Some(r),
        }
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        self.reason().map_or("CONFIRMED", OrderReason::as_str)
    }
}

/// Stock of the batch's tickets, drawn down as orders are decided one by one.
#[derive(Debug)]
pub struct Ledger {
    locked: HashMap<Uuid, Stock>,
    taken: HashMap<Uuid, i64>,
}

impl Ledger {
    /// A ledger over the locked rows.
    pub fn new(locked: HashMap<Uuid, Stock>) -> Self {
        Self { locked, taken: HashMap::new() }
    }

    /// Decides the next order in arrival order; call it in stream-sequence order.
    pub fn decide(&mut self, ticket: Uuid, quantity: u32) -> Outcome {
        let Some(stock) = self.locked.get(&ticket) else { return Outcome::Rejected(OrderReason::Invalid) };
        let quantity = i64::from(quantity);
        if quantity < 1 || quantity > stock.max_per_order {
            return Outcome::Rejected(OrderReason::Invalid);
        }
        let taken = self.taken.entry(ticket).or_default();
        let remaining = stock.available - *taken;
        if quantity <= remaining {
            *taken += quantity;
            Outcome::Confirmed
        } else if remaining == 0 {
            Outcome::Rejected(OrderReason::SoldOut)
        } else {
            Outcome::Rejected(OrderReason::InsufficientStock)
        }
    }

    /// Tickets to decrement and by how much (only those that sold something), sorted.
    pub fn decrements(&self) -> Vec<(Uuid, i64)> {
        let mut d: Vec<(Uuid, i64)> =
            self.taken.iter().filter(|(_, n)| **n > 0).map(|(t, n)| (*t, *n)).collect();
        d.sort();
        d
    }

    /// Stock left of every locked ticket once the decrements are applied, sorted.
    pub fn remaining(&self) -> Vec<(Uuid, i64)> {
        let mut r: Vec<(Uuid, i64)> = self
            .locked
            .iter()
            .map(|(t, s)| (*t, s.available - self.taken.get(t).copied().unwrap_or(0)))
            .collect();
        r.sort();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_in_order_until_stock_runs_out() {
        let t = Uuid::from_u128(1);
        let mut l = Ledger::new(HashMap::from([(t, Stock { available: 5, max_per_order: 4 })]));
        assert_eq!(l.decide(t, 3), Outcome::Confirmed);
        assert_eq!(l.decide(t, 3), Outcome::Rejected(OrderReason::InsufficientStock));
        assert_eq!(l.decide(t, 2), Outcome::Confirmed);
        assert_eq!(l.decide(t, 1), Outcome::Rejected(OrderReason::SoldOut));
        assert_eq!(l.decide(t, 9), Outcome::Rejected(OrderReason::Invalid));
        assert_eq!(l.decide(Uuid::from_u128(2), 1), Outcome::Rejected(OrderReason::Invalid));
        assert_eq!(l.decrements(), vec![(t, 5)]);
        assert_eq!(l.remaining(), vec![(t, 0)]);
    }
}
