//! The consistency verdicts, as pure functions of what was observed, so that
//! every rule is unit-tested without a server. The one checker: the load runner
//! judges its runs with them, and every e2e suite ends with them (through
//! `tps_e2e::settle_and_check`).
//!
//! The same rules judge what the API showed and what Postgres holds; a
//! [`Source`] says which one a verdict speaks for.

use serde::Serialize;
use uuid::Uuid;

/// Where the facts behind a verdict came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Read through the public API.
    Api,
    /// Read from Postgres (`--database-url`).
    Postgres,
}

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Which rule: `not-settled`, `lost`, `oversold`, `sold-out`, `stock`, `duplicates`, `phantom`.
    pub check: &'static str,
    /// Where the facts came from.
    pub source: Source,
    /// Whether the rule held.
    pub ok: bool,
    /// The numbers behind it.
    pub detail: String,
}

impl Verdict {
    fn new(check: &'static str, source: Source, ok: bool, detail: String) -> Self {
        Self { check, source, ok, detail }
    }
}

/// One ticket row at the end of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketTally {
    /// The ticket.
    pub id: Uuid,
    /// `totalQuantity`.
    pub stock: u64,
    /// Confirmed quantity.
    pub sold: u64,
    /// `available` as reported, when known.
    pub available: Option<u64>,
    /// Quantity asked for by accepted (202) orders.
    pub demand: u64,
}

/// What was seen of a run's orders, from one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTally {
    /// Where from.
    pub source: Source,
    /// Distinct orders answered 202.
    pub accepted: u64,
    /// Accepted orders still PENDING at the end (API only).
    pub not_settled: Option<u64>,
    /// Accepted orders that vanished: 404 through the API, or no row in Postgres.
    pub lost: u64,
    /// Orders that exist more than once: one id acknowledged for two requests,
    /// or two rows for one (user, Idempotency-Key).
    pub duplicates: u64,
    /// Rows for the run's tickets that no 202 acknowledged, and how many
    /// requests got no answer and so might legitimately have one (Postgres only).
    pub phantom: Option<(u64, u64)>,
    /// The tickets of the run.
    pub tickets: Vec<TicketTally>,
    /// The largest quantity one order asked for: a sold-out ticket may keep
    /// fewer than this many unsold when the last orders did not fit.
    pub max_quantity: u64,
}

/// Judges a run's orders: nothing unsettled, lost, oversold, duplicated or
/// invented, every ticket sold when accepted demand covered its stock, and
/// `available = stock - sold` where `available` is known.
pub fn order_verdicts(t: &OrderTally) -> Vec<Verdict> {
    let mut out = Vec::new();
    if let Some(pending) = t.not_settled {
        let detail = format!("{pending} of {} accepted orders still PENDING", t.accepted);
        out.push(Verdict::new("not-settled", t.source, pending == 0, detail));
    }
    let lost_detail = match t.source {
        Source::Api => format!("{} of {} accepted orders answer 404", t.lost, t.accepted),
        Source::Postgres => format!("{} of {} accepted orders have no row", t.lost, t.accepted),
    };
    out.push(Verdict::new("lost", t.source, t.lost == 0, lost_detail));
    out.push(oversold(t));
    out.push(sold_out(t));
    if t.tickets.iter().any(|x| x.available.is_some()) {
        out.push(stock(t));
    }
    out.push(Verdict::new(
        "duplicates",
        t.source,
        t.duplicates == 0,
        format!("{} duplicated orders", t.duplicates),
    ));
    if let Some((found, unanswered)) = t.phantom {
        let detail =
            format!("{found} unacknowledged rows; {unanswered} requests got no answer and may own one");
        out.push(Verdict::new("phantom", t.source, found <= unanswered, detail));
    }
    out
}

fn oversold(t: &OrderTally) -> Verdict {
    let over: Vec<String> = t
        .tickets
        .iter()
        .filter(|x| x.sold > x.stock)
        .map(|x| format!("{} sold {} of {}", x.id, x.sold, x.stock))
        .collect();
    let (sold, stock) = totals(t);
    let detail = if over.is_empty() {
        format!("sold {sold} of {stock}")
    } else {
        format!("OVERSOLD: {}", over.join("; "))
    };
    Verdict::new("oversold", t.source, over.is_empty(), detail)
}

fn sold_out(t: &OrderTally) -> Verdict {
    let slack = t.max_quantity.max(1) - 1;
    let short: Vec<String> = t
        .tickets
        .iter()
        .filter(|x| x.demand >= x.stock && x.sold + slack < x.stock)
        .map(|x| format!("{} sold {} of {} with demand {}", x.id, x.sold, x.stock, x.demand))
        .collect();
    let (sold, stock) = totals(t);
    let demand: u64 = t.tickets.iter().map(|x| x.demand).sum();
    let detail = if short.is_empty() {
        format!("sold {sold} of {stock}, accepted demand {demand}")
    } else {
        format!("UNSOLD: {}", short.join("; "))
    };
    Verdict::new("sold-out", t.source, short.is_empty(), detail)
}

fn stock(t: &OrderTally) -> Verdict {
    let off: Vec<String> = t
        .tickets
        .iter()
        .filter_map(|x| Some((x, x.available?)))
        .filter(|(x, a)| x.sold > x.stock || *a != x.stock - x.sold)
        .map(|(x, a)| format!("{} available {a} but stock {} - sold {}", x.id, x.stock, x.sold))
        .collect();
    let detail = if off.is_empty() { "available = stock - sold".to_owned() } else { off.join("; ") };
    Verdict::new("stock", t.source, off.is_empty(), detail)
}

fn totals(t: &OrderTally) -> (u64, u64) {
    (t.tickets.iter().map(|x| x.sold).sum(), t.tickets.iter().map(|x| x.stock).sum())
}

/// What was seen of a run's sign-ups, from one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserTally {
    /// Where from.
    pub source: Source,
    /// Distinct sign-ups answered 202.
    pub accepted: u64,
    /// Still PENDING at the end (API only).
    pub not_settled: Option<u64>,
    /// Accepted but gone: 404 through the API, or CREATED without a row.
    pub lost: u64,
    /// Users stored twice (same id acknowledged twice, or one email on two rows).
    pub duplicates: u64,
}

/// Judges a run's sign-ups: all settled, none lost, none duplicated.
pub fn user_verdicts(t: &UserTally) -> Vec<Verdict> {
    let mut out = Vec::new();
    if let Some(pending) = t.not_settled {
        let detail = format!("{pending} of {} accepted sign-ups still PENDING", t.accepted);
        out.push(Verdict::new("not-settled", t.source, pending == 0, detail));
    }
    out.push(Verdict::new(
        "lost",
        t.source,
        t.lost == 0,
        format!("{} of {} accepted sign-ups lost", t.lost, t.accepted),
    ));
    out.push(Verdict::new(
        "duplicates",
        t.source,
        t.duplicates == 0,
        format!("{} duplicated users", t.duplicates),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(stock: u64, sold: u64, demand: u64) -> TicketTally {
        TicketTally {
            id: Uuid::from_u128(1),
            stock,
            sold,
            available: Some(stock.saturating_sub(sold)),
            demand,
        }
    }

    fn healthy() -> OrderTally {
        OrderTally {
            source: Source::Postgres,
            accepted: 120,
            not_settled: Some(0),
            lost: 0,
            duplicates: 0,
            phantom: Some((0, 0)),
            tickets: vec![ticket(100, 100, 120)],
            max_quantity: 1,
        }
    }

    fn failed(t: &OrderTally) -> Vec<&'static str> {
        order_verdicts(t).into_iter().filter(|v| !v.ok).map(|v| v.check).collect()
    }

    #[test]
    fn a_healthy_run_passes_every_check() {
        let v = order_verdicts(&healthy());
        assert_eq!(
            v.iter().map(|v| v.check).collect::<Vec<_>>(),
            ["not-settled", "lost", "oversold", "sold-out", "stock", "duplicates", "phantom"]
        );
        assert!(v.iter().all(|v| v.ok), "{v:?}");
    }

    #[test]
    fn oversold_is_caught_even_when_available_looks_fine() {
        let mut t = healthy();
        t.tickets = vec![TicketTally { available: Some(0), ..ticket(100, 101, 120) }];
        assert_eq!(failed(&t), ["oversold", "stock"]);
        assert!(order_verdicts(&t)[2].detail.contains("OVERSOLD"));
    }

    #[test]
    fn unsold_stock_under_excess_demand_fails_but_not_under_low_demand() {
        let mut t = healthy();
        t.tickets = vec![ticket(100, 99, 120)];
        assert_eq!(failed(&t), ["sold-out"]);
        t.tickets = vec![ticket(100, 99, 99)];
        assert!(failed(&t).is_empty(), "demand below stock: nothing to sell out");
        // With orders of up to 3, the last 2 may stay unsold; 3 may not.
        t.max_quantity = 3;
        t.tickets = vec![ticket(100, 98, 120)];
        assert!(failed(&t).is_empty());
        t.tickets = vec![ticket(100, 97, 120)];
        assert_eq!(failed(&t), ["sold-out"]);
    }

    #[test]
    fn lost_not_settled_duplicate_and_phantom_orders_fail() {
        let mut t = healthy();
        t.lost = 1;
        assert_eq!(failed(&t), ["lost"]);
        let mut t = healthy();
        t.not_settled = Some(3);
        assert_eq!(failed(&t), ["not-settled"]);
        let mut t = healthy();
        t.duplicates = 2;
        assert_eq!(failed(&t), ["duplicates"]);
        let mut t = healthy();
        t.phantom = Some((2, 1));
        assert_eq!(failed(&t), ["phantom"]);
        t.phantom = Some((1, 1));
        assert!(failed(&t).is_empty(), "a request with no answer may own one row");
    }

    #[test]
    fn available_must_equal_stock_minus_sold() {
        let mut t = healthy();
        t.tickets = vec![TicketTally { available: Some(1), ..ticket(100, 100, 120) }];
        assert_eq!(failed(&t), ["stock"]);
        t.tickets = vec![TicketTally { available: None, ..ticket(100, 100, 120) }];
        assert!(!order_verdicts(&t).iter().any(|v| v.check == "stock"), "no stock check without available");
    }

    #[test]
    fn user_rules() {
        let ok =
            UserTally { source: Source::Api, accepted: 10, not_settled: Some(0), lost: 0, duplicates: 0 };
        assert!(user_verdicts(&ok).iter().all(|v| v.ok));
        let bad = UserTally { not_settled: Some(1), lost: 2, duplicates: 3, ..ok };
        assert_eq!(user_verdicts(&bad).iter().filter(|v| !v.ok).count(), 3);
    }
}
