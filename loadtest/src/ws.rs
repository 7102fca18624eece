//! A sample of buyers hold a WebSocket on `/v1/events`; for each pushed final
//! order update, the delay from its commit (`processedAt`) to its arrival here
//! is recorded. Server and runner share a clock on one machine; across machines
//! the delay includes their clock offset.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::http::Target;
use crate::latency::{Percentiles, histogram};

/// Buyers listening for their order updates.
pub struct WsSample {
    stop: watch::Sender<bool>,
    readers: JoinSet<Histogram<u64>>,
    clients: u64,
}

/// What the sample saw.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WsReport {
    /// Buyers asked to connect.
    pub clients: u64,
    /// Buyers whose WebSocket opened.
    pub connected: u64,
    /// Commit-to-client delay of every final `order.updated` received.
    pub delay: Percentiles,
}

#[derive(Deserialize)]
struct Pushed {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    order: Option<PushedOrder>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PushedOrder {
    status: String,
    #[serde(default)]
    processed_at: Option<DateTime<Utc>>,
}

impl WsSample {
    /// Opens one WebSocket per token (token in `?token=`), all at once, and
    /// returns when each has opened or failed.
    pub async fn connect(target: &Target, tokens: Vec<String>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let clients = tokens.len() as u64;
        let url = target.ws_url("/v1/events");
        let opened = futures::future::join_all(
            tokens.into_iter().map(|t| tokio_tungstenite::connect_async(format!("{url}?token={t}"))),
        )
        .await;
        let mut readers = JoinSet::new();
        for (socket, _) in opened.into_iter().flatten() {
            readers.spawn(read_updates(socket, stopped.clone()));
        }
        Self { stop, readers, clients }
    }

    /// Buyers whose WebSocket opened.
    pub fn connected(&self) -> u64 {
        self.readers.len() as u64
    }

    /// Closes every socket and merges the delays.
    pub async fn finish(mut self) -> WsReport {
        let connected = self.connected();
        let _ = self.stop.send(true);
        let mut all = histogram();
        while let Some(h) = self.readers.join_next().await {
            if let Ok(h) = h {
                all.add(&h).expect("auto-resizing histograms merge");
            }
        }
        WsReport { clients: self.clients, connected, delay: Percentiles::of(&all) }
    }
}

async fn read_updates<S>(mut socket: S, mut stopped: watch::Receiver<bool>) -> Histogram<u64>
where
    S: futures::Stream<
            Item = Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>,
        > + Unpin,
{
    let mut delays = histogram();
    loop {
        let msg = tokio::select! {
            _ = stopped.changed() => break,
            msg = socket.next() => msg,
        };
        let Some(Ok(msg)) = msg else { break };
        let Ok(text) = msg.to_text() else { continue };
        if let Some(us) = commit_delay_us(text, Utc::now()) {
            delays.record(us.max(1)).expect("auto-resizing");
        }
    }
    delays
}

/// The delay, in µs, from a final order update's commit to `now`; none for
/// other messages (ticket updates, PENDING, no `processedAt`).
pub fn commit_delay_us(text: &str, now: DateTime<Utc>) -> Option<u64> {
    // Most traffic is ticket.updated; skip it before parsing.
    if !text.contains("order.updated") {
        return None;
    }
    let pushed: Pushed = serde_json::from_str(text).ok()?;
    let order = pushed.order.filter(|_| pushed.kind == "order.updated")?;
    let committed = order.processed_at.filter(|_| order.status != "PENDING")?;
    Some((now - committed).num_microseconds()?.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_is_measured_from_processed_at_for_final_order_updates_only() {
        let now: DateTime<Utc> = "2025-01-01T00:00:01.250Z".parse().unwrap();
        let confirmed = r#"{"type":"order.updated","order":{"id":"o","status":"CONFIRMED","processedAt":"2025-01-01T00:00:01.200Z"}}"#;
        assert_eq!(commit_delay_us(confirmed, now), Some(50_000));
        let pending = r#"{"type":"order.updated","order":{"id":"o","status":"PENDING"}}"#;
        assert_eq!(commit_delay_us(pending, now), None);
        let ticket = r#"{"type":"ticket.updated","ticketId":"t","available":3,"soldOut":false}"#;
        assert_eq!(commit_delay_us(ticket, now), None);
        let future =
            r#"{"type":"order.updated","order":{"status":"REJECTED","processedAt":"2025-01-01T00:00:02Z"}}"#;
        assert_eq!(commit_delay_us(future, now), Some(0), "clock skew never goes negative");
    }
}
