//! What `loadtest top` shows, computed from two scrapes of every endpoint one
//! interval apart: rates and quantiles from counter and bucket deltas, gauges
//! from the latest scrape.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use tps_testkit::metrics::Sample;

/// The samples of every endpoint at one moment: `(endpoint, sample)`.
pub type Snapshot = Vec<(String, Sample)>;

/// One screen of numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// New orders accepted per second.
    pub accept_rate: f64,
    /// POST /v1/orders answers per second by status class.
    pub orders_by_class: BTreeMap<String, f64>,
    /// Sold-out rejections per second.
    pub sold_out_rate: f64,
    /// p99 of POST /v1/orders over the interval, seconds (None when idle).
    pub accept_p99: Option<f64>,
    /// Unsettled commands per shard (pending + unacked).
    pub backlog: BTreeMap<u32, f64>,
    /// p99 of accept → settle over the interval, seconds.
    pub settle_lag_p99: Option<f64>,
    /// Orders settled per second.
    pub settle_rate: f64,
    /// Units of stock left, if an api exports it.
    pub stock_left: Option<f64>,
    /// Dead letters stored now.
    pub dead_letters: Option<f64>,
    /// Shard → the endpoint of the worker that owns it.
    pub owners: BTreeMap<u32, String>,
    /// SHARDS, if an api exports it.
    pub shards: Option<u32>,
    /// WebSocket clients, if exported.
    pub ws_clients: Option<f64>,
    /// Endpoints that did not answer.
    pub unreachable: Vec<String>,
}

const ORDERS_ROUTE: [(&str, &str); 2] = [("route", "/v1/orders"), ("method", "POST")];

fn matching<'a>(
    snap: &'a Snapshot,
    name: &'a str,
    labels: &'a [(&str, &str)],
) -> impl Iterator<Item = &'a (String, Sample)> {
    snap.iter().filter(move |(_, s)| s.name == name && labels.iter().all(|(k, v)| s.label(k) == *v))
}

fn sum(snap: &Snapshot, name: &str, labels: &[(&str, &str)]) -> f64 {
    matching(snap, name, labels).map(|(_, s)| s.value).sum()
}

fn max(snap: &Snapshot, name: &str) -> Option<f64> {
    matching(snap, name, &[]).map(|(_, s)| s.value).reduce(f64::max)
}

/// Per second between two sums; a restart (counter reset) reads as 0.
fn rate(prev: &Snapshot, now: &Snapshot, secs: f64, name: &str, labels: &[(&str, &str)]) -> f64 {
    ((sum(now, name, labels) - sum(prev, name, labels)) / secs).max(0.0)
}

/// The `q` quantile of a histogram over the interval, interpolated within the
/// bucket as Prometheus's `histogram_quantile` does.
fn quantile(prev: &Snapshot, now: &Snapshot, q: f64, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let bucket = format!("{name}_bucket");
    let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for (sign, snap) in [(-1.0, prev), (1.0, now)] {
        for (_, s) in matching(snap, &bucket, labels) {
            let le: f64 = if s.label("le") == "+Inf" { f64::INFINITY } else { s.label("le").parse().ok()? };
            by_le.entry(le.to_bits()).or_insert((le, 0.0)).1 += sign * s.value;
        }
    }
    let mut buckets: Vec<(f64, f64)> = by_le.into_values().collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let within = count - below;
            return Some(if within > 0.0 { lower + (le - lower) * (rank - below) / within } else { le });
        }
        (lower, below) = (le, count);
    }
    None
}

impl Status {
    /// The status between `prev` and `now`, taken `secs` apart.
    pub fn between(prev: &Snapshot, now: &Snapshot, secs: f64) -> Self {
        let secs = secs.max(0.001);
        let mut orders_by_class = BTreeMap::new();
        for class in ["2xx", "4xx", "5xx"] {
            let labels = [ORDERS_ROUTE[0], ORDERS_ROUTE[1], ("status", class)];
            orders_by_class
                .insert(class.to_owned(), rate(prev, now, secs, "tps_http_requests_total", &labels));
        }
        let mut backlog = BTreeMap::new();
        for name in ["tps_orders_backlog_messages", "tps_orders_unacked_messages"] {
            // Every api replica reports the same shard: take the max per shard per gauge.
            let mut per_shard: BTreeMap<u32, f64> = BTreeMap::new();
            for (_, s) in matching(now, name, &[]) {
                if let Ok(shard) = s.label("shard").parse() {
                    let v = per_shard.entry(shard).or_insert(0.0);
                    *v = v.max(s.value);
                }
            }
            for (shard, v) in per_shard {
                *backlog.entry(shard).or_insert(0.0) += v;
            }
        }
        let mut owners = BTreeMap::new();
        for (endpoint, s) in matching(now, "tps_worker_shard_owned", &[("stream", "ORDERS")]) {
            if s.value >= 1.0
                && let Ok(shard) = s.label("shard").parse()
            {
                owners.insert(shard, endpoint.clone());
            }
        }
        let settled: f64 = ["CONFIRMED", "SOLD_OUT", "INSUFFICIENT_STOCK", "INVALID"]
            .iter()
            .map(|o| {
                rate(prev, now, secs, "tps_worker_settled_total", &[("stream", "ORDERS"), ("outcome", o)])
            })
            .sum();
        Self {
            accept_rate: rate(prev, now, secs, "tps_api_orders_accepted_total", &[]),
            orders_by_class,
            sold_out_rate: rate(prev, now, secs, "tps_api_sold_out_rejections_total", &[]),
            accept_p99: quantile(prev, now, 0.99, "tps_http_request_duration_seconds", &ORDERS_ROUTE),
            backlog,
            settle_lag_p99: quantile(
                prev,
                now,
                0.99,
                "tps_worker_settle_lag_seconds",
                &[("stream", "ORDERS")],
            ),
            settle_rate: settled,
            stock_left: max(now, "tps_tickets_available"),
            dead_letters: max(now, "tps_dead_letters_stored_messages"),
            owners,
            shards: max(now, "tps_shards_configured").map(|s| s as u32),
            ws_clients: matching(now, "tps_ws_clients", &[]).map(|(_, s)| s.value).reduce(|a, b| a + b),
            unreachable: Vec::new(),
        }
    }

    /// The screen, as plain lines (the caller clears the terminal).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let opt = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.0}"));
        let ms = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{:.1} ms", v * 1000.0));
        let classes: Vec<String> =
            self.orders_by_class.iter().map(|(c, r)| format!("{c} {r:.0}/s")).collect();
        let _ = writeln!(
            out,
            "accepted   {:>10.0}/s    POST /v1/orders: {}",
            self.accept_rate,
            classes.join("  ")
        );
        let _ =
            writeln!(out, "sold out   {:>10.0}/s    accept p99: {}", self.sold_out_rate, ms(self.accept_p99));
        let _ = writeln!(
            out,
            "settled    {:>10.0}/s    settle lag p99: {}",
            self.settle_rate,
            ms(self.settle_lag_p99)
        );
        let _ = writeln!(
            out,
            "stock left {:>12}    dead letters: {}",
            opt(self.stock_left),
            opt(self.dead_letters)
        );
        if let Some(ws) = self.ws_clients {
            let _ = writeln!(out, "ws clients {ws:>12.0}");
        }
        let total: f64 = self.backlog.values().sum();
        let _ =
            writeln!(out, "\nshard  backlog  owner                              (total backlog {total:.0})");
        let shards: Vec<u32> = match self.shards {
            Some(n) => (0..n).collect(),
            None => self
                .backlog
                .keys()
                .chain(self.owners.keys())
                .copied()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
        };
        for shard in shards {
            let backlog = self.backlog.get(&shard).map_or("—".to_owned(), |b| format!("{b:.0}"));
            let owner = self.owners.get(&shard).map_or("NO OWNER", String::as_str);
            let _ = writeln!(out, "{shard:>5}  {backlog:>7}  {owner}");
        }
        for endpoint in &self.unreachable {
            let _ = writeln!(out, "unreachable: {endpoint}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tps_testkit::metrics::parse;

    fn snap(endpoint: &str, text: &str) -> Snapshot {
        parse(text).into_iter().map(|s| (endpoint.to_owned(), s)).collect()
    }

    const BEFORE: &str = r#"
tps_api_orders_accepted_total 100
tps_http_requests_total{route="/v1/orders",method="POST",status="2xx"} 100
tps_http_request_duration_seconds_bucket{route="/v1/orders",method="POST",status="2xx",le="0.01"} 100
tps_http_request_duration_seconds_bucket{route="/v1/orders",method="POST",status="2xx",le="0.1"} 100
tps_http_request_duration_seconds_bucket{route="/v1/orders",method="POST",status="2xx",le="+Inf"} 100
"#;
    const AFTER: &str = r#"
tps_api_orders_accepted_total 300
tps_http_requests_total{route="/v1/orders",method="POST",status="2xx"} 300
tps_http_request_duration_seconds_bucket{route="/v1/orders",method="POST",status="2xx",le="0.01"} 100
tps_http_request_duration_seconds_bucket{route="/v1/orders",method="POST",status="2xx",le="0.1"} 300
tps_http_request_duration_seconds_bucket{route="/v1/orders",method="POST",status="2xx",le="+Inf"} 300
tps_orders_backlog_messages{shard="0"} 5
tps_orders_unacked_messages{shard="0"} 2
tps_orders_backlog_messages{shard="1"} 0
tps_orders_unacked_messages{shard="1"} 0
tps_tickets_available 42
tps_shards_configured 2
"#;
    const WORKER: &str = "tps_worker_shard_owned{stream=\"ORDERS\",shard=\"0\"} 1\ntps_worker_shard_owned{stream=\"ORDERS\",shard=\"1\"} 0\n";

    #[test]
    fn rates_quantiles_backlog_and_owners_come_from_the_deltas() {
        let prev = snap("api", BEFORE);
        let mut now = snap("api", AFTER);
        now.extend(snap("worker:9091", WORKER));
        let s = Status::between(&prev, &now, 2.0);
        assert_eq!(s.accept_rate, 100.0);
        assert_eq!(s.orders_by_class["2xx"], 100.0);
        // All 200 new requests fell in (0.01, 0.1]: p99 interpolates to 0.01 + 0.09 * 0.99.
        let p99 = s.accept_p99.unwrap();
        assert!((p99 - 0.0991).abs() < 1e-9, "{p99}");
        assert_eq!(s.backlog[&0], 7.0);
        assert_eq!(s.backlog[&1], 0.0);
        assert_eq!(s.owners.get(&0).map(String::as_str), Some("worker:9091"));
        assert!(!s.owners.contains_key(&1));
        assert_eq!(s.stock_left, Some(42.0));
        let screen = s.render();
        assert!(screen.contains("NO OWNER"), "{screen}");
        assert!(screen.contains("99.1 ms"), "{screen}");
    }

    #[test]
    fn an_idle_interval_has_no_quantile() {
        let prev = snap("api", BEFORE);
        assert_eq!(Status::between(&prev, &prev, 1.0).accept_p99, None);
    }
}
