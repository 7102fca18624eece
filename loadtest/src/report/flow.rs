//! Orders through the system second by second: accepted, settled, sold against the
//! stock, the backlog between them, and how long settling took. The report page draws it.

use std::time::SystemTime;

use serde::Serialize;

use crate::latency::{Percentiles, histogram};

/// One accepted order as the run saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tracked {
    /// When its 202 arrived.
    pub accepted_at: SystemTime,
    /// When the worker committed it (`processedAt`), if it became final.
    pub settled_at: Option<SystemTime>,
    /// Tickets it bought: its quantity when CONFIRMED, 0 when REJECTED or not final.
    pub sold: u64,
}

/// One second of the flow, counted from the scenario's start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowPoint {
    /// Seconds after the start.
    pub second: u32,
    /// 202s that arrived in this second.
    pub accepted: u64,
    /// Orders that became final in this second.
    pub settled: u64,
    /// 202s so far.
    pub accepted_total: u64,
    /// Final orders so far.
    pub settled_total: u64,
    /// Tickets sold so far.
    pub sold_total: u64,
    /// Accepted and not yet final at the end of this second.
    pub backlog: u64,
    /// From the 202 to the commit, for the orders settled in this second: p99 and max.
    pub settle_lag_p99_ms: Option<f64>,
    /// Largest.
    pub settle_lag_max_ms: Option<f64>,
}

/// The flow of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Flow {
    /// Tickets on sale at the start.
    pub stock: u64,
    /// Every second from the start to the last event.
    pub seconds: Vec<FlowPoint>,
    /// When the last ticket was sold, in seconds after the start (none if stock is left).
    pub sold_out_at_s: Option<f64>,
    /// When the last accepted order became final, in seconds after the start (none if some never did).
    pub settled_at_s: Option<f64>,
}

impl Flow {
    /// Counts `orders` per second after `start`.
    pub fn of(start: SystemTime, stock: u64, orders: &[Tracked]) -> Self {
        let after = |t: SystemTime| t.duration_since(start).unwrap_or_default().as_secs_f64();
        let last = orders
            .iter()
            .flat_map(|o| [Some(o.accepted_at), o.settled_at])
            .flatten()
            .map(after)
            .fold(0.0f64, f64::max);
        let n = last.floor() as usize + 1;
        let mut seconds: Vec<FlowPoint> =
            (0..n).map(|s| FlowPoint { second: s as u32, ..FlowPoint::default() }).collect();
        let mut lags: Vec<_> = (0..n).map(|_| histogram()).collect();
        let mut sales: Vec<(f64, u64)> = Vec::new();
        for o in orders {
            seconds[after(o.accepted_at) as usize].accepted += 1;
            if let Some(at) = o.settled_at {
                let s = after(at) as usize;
                seconds[s].settled += 1;
                let lag = at.duration_since(o.accepted_at).unwrap_or_default();
                lags[s].record((lag.as_micros() as u64).max(1)).expect("auto-resizing");
                if o.sold > 0 {
                    sales.push((after(at), o.sold));
                }
            }
        }
        sales.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut sold_out_at_s = None;
        let mut sold = 0u64;
        for (at, q) in &sales {
            sold += q;
            if sold >= stock && stock > 0 && sold_out_at_s.is_none() {
                sold_out_at_s = Some(*at);
            }
        }
        let (mut accepted, mut settled, mut sold, mut sale) = (0u64, 0u64, 0u64, sales.iter().peekable());
        for (p, lag) in seconds.iter_mut().zip(&lags) {
            accepted += p.accepted;
            settled += p.settled;
            while let Some((_, q)) = sale.next_if(|(at, _)| (*at as u32) <= p.second) {
                sold += q;
            }
            (p.accepted_total, p.settled_total, p.sold_total) = (accepted, settled, sold);
            p.backlog = accepted.saturating_sub(settled);
            if !lag.is_empty() {
                let l = Percentiles::of(lag);
                (p.settle_lag_p99_ms, p.settle_lag_max_ms) = (Some(l.p99_ms), Some(l.max_ms));
            }
        }
        let all_final = orders.iter().all(|o| o.settled_at.is_some());
        let settled_at_s =
            orders.iter().filter_map(|o| o.settled_at).map(after).reduce(f64::max).filter(|_| all_final);
        Self { stock, seconds, sold_out_at_s, settled_at_s }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(start: SystemTime, ms: u64) -> SystemTime {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn counts_accepted_settled_sold_and_backlog_per_second() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let order = |acc, set: Option<u64>, sold| Tracked {
            accepted_at: at(t0, acc),
            settled_at: set.map(|s| at(t0, s)),
            sold,
        };
        let orders = [
            order(100, Some(900), 2),     // second 0 → 0, lag 800 ms
            order(200, Some(1_500), 2),   // second 0 → 1, lag 1,300 ms: the stock of 4 is gone at 1.5 s
            order(1_100, Some(1_600), 0), // second 1 → 1, rejected
            order(1_200, Some(3_050), 0), // second 1 → 3
        ];
        let f = Flow::of(t0, 4, &orders);
        assert_eq!(f.seconds.len(), 4);
        let col = |get: fn(&FlowPoint) -> u64| f.seconds.iter().map(get).collect::<Vec<_>>();
        assert_eq!(col(|p| p.accepted), [2, 2, 0, 0]);
        assert_eq!(col(|p| p.settled), [1, 2, 0, 1]);
        assert_eq!(col(|p| p.accepted_total), [2, 4, 4, 4]);
        assert_eq!(col(|p| p.settled_total), [1, 3, 3, 4]);
        assert_eq!(col(|p| p.sold_total), [2, 4, 4, 4]);
        assert_eq!(col(|p| p.backlog), [1, 1, 1, 0]);
        assert_eq!(f.sold_out_at_s, Some(1.5));
        assert_eq!(f.settled_at_s, Some(3.05));
        let lag = |i: usize| f.seconds[i].settle_lag_max_ms.unwrap();
        assert!((lag(0) - 800.0).abs() < 1.0 && (lag(1) - 1_300.0).abs() < 2.0, "{:?}", f.seconds);
        assert_eq!(f.seconds[2].settle_lag_max_ms, None, "nothing settled in second 2");
    }

    #[test]
    fn no_sell_out_with_stock_left_and_no_settle_time_while_one_is_pending() {
        let t0 = SystemTime::UNIX_EPOCH;
        let orders = [
            Tracked { accepted_at: at(t0, 10), settled_at: Some(at(t0, 20)), sold: 1 },
            Tracked { accepted_at: at(t0, 30), settled_at: None, sold: 0 },
        ];
        let f = Flow::of(t0, 5, &orders);
        assert_eq!((f.sold_out_at_s, f.settled_at_s), (None, None));
        assert_eq!(f.seconds[0].backlog, 1);
    }
}
