//! Polls accepted orders or sign-ups through the API until each is final, or
//! until the settle timeout, and notes when the last one became final.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use http::HeaderValue;
use indicatif::ProgressBar;
use serde::Deserialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::http::{Call, Conn, Target};

/// One thing to poll: its GET path and its owner's token.
#[derive(Debug, Clone)]
pub struct Pollee {
    /// `/v1/orders/{id}` or `/v1/users/{id}`.
    pub path: String,
    /// The owner's `Authorization` value (orders are owner-only).
    pub auth: Option<HeaderValue>,
}

/// The fields of an order or a sign-up that say where it stands.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    /// `PENDING`, `CONFIRMED`, `REJECTED`, `CREATED`.
    pub status: String,
    /// Why it was rejected.
    #[serde(default)]
    pub reason: Option<String>,
    /// When the worker committed it (orders).
    #[serde(default)]
    pub processed_at: Option<DateTime<Utc>>,
}

impl Observed {
    /// Whether it is no longer PENDING.
    pub fn is_final(&self) -> bool {
        self.status != "PENDING"
    }
}

/// Where each pollee ended.
#[derive(Debug, Default)]
pub struct PollOutcome {
    /// Index into the pollees, and what it finally read.
    pub finals: Vec<(usize, Observed)>,
    /// Still PENDING (or unreadable) at the deadline.
    pub pending: Vec<usize>,
    /// Answered 404 at the deadline: accepted, then gone.
    pub missing: Vec<usize>,
    /// When the poll that saw the last one final ended (None if some never did).
    pub all_final_at: Option<SystemTime>,
    /// Rounds of polling.
    pub rounds: u32,
}

enum Read {
    Final(Observed),
    Pending,
    Missing,
    Failed,
}

/// Polls every pollee, round after round, over `connections` connections.
pub async fn settle(
    target: &Arc<Target>,
    pollees: Vec<Pollee>,
    connections: usize,
    timeout: Duration,
    bar: &ProgressBar,
) -> PollOutcome {
    let pollees = Arc::new(pollees);
    let deadline = Instant::now() + timeout;
    let mut remaining: Vec<usize> = (0..pollees.len()).collect();
    let mut outcome = PollOutcome::default();
    bar.set_length(pollees.len() as u64);
    loop {
        outcome.rounds += 1;
        let reads = poll_round(target, &pollees, &remaining, connections).await;
        let mut still = Vec::new();
        let mut missing = Vec::new();
        for (i, read) in reads {
            match read {
                Read::Final(o) => outcome.finals.push((i, o)),
                Read::Missing => missing.push(i),
                Read::Pending | Read::Failed => still.push(i),
            }
        }
        bar.set_position(outcome.finals.len() as u64);
        if still.is_empty() && missing.is_empty() {
            outcome.all_final_at = Some(SystemTime::now());
            return outcome;
        }
        if Instant::now() >= deadline {
            outcome.pending = still;
            outcome.missing = missing;
            return outcome;
        }
        still.extend(missing);
        remaining = still;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn poll_round(
    target: &Arc<Target>,
    pollees: &Arc<Vec<Pollee>>,
    remaining: &[usize],
    connections: usize,
) -> Vec<(usize, Read)> {
    let workers = connections.clamp(1, 512).min(remaining.len().max(1));
    let mut set = JoinSet::new();
    for chunk in remaining.chunks(remaining.len().div_ceil(workers).max(1)) {
        let (target, pollees, chunk) = (target.clone(), pollees.clone(), chunk.to_vec());
        set.spawn(async move {
            let mut conn = Conn::open(&target, None).await.ok();
            let mut reads = Vec::with_capacity(chunk.len());
            for i in chunk {
                reads.push((i, read_one(&target, &mut conn, &pollees[i]).await));
            }
            reads
        });
    }
    let mut all = Vec::with_capacity(remaining.len());
    while let Some(reads) = set.join_next().await {
        all.extend(reads.expect("pollers do not panic"));
    }
    all
}

async fn read_one(target: &Arc<Target>, conn: &mut Option<Conn>, p: &Pollee) -> Read {
    if !conn.as_ref().is_some_and(Conn::is_open) {
        *conn = Conn::open(target, None).await.ok();
    }
    let Some(c) = conn.as_mut() else { return Read::Failed };
    let mut call = Call::get(p.path.clone());
    call.auth = p.auth.clone();
    match tokio::time::timeout(Duration::from_secs(10), c.send(&call)).await {
        Ok(Ok(a)) if a.status == 200 => match serde_json::from_slice::<Observed>(&a.body) {
            Ok(o) if o.is_final() => Read::Final(o),
            Ok(_) => Read::Pending,
            Err(_) => Read::Failed,
        },
        Ok(Ok(a)) if a.status == 404 => Read::Missing,
        Ok(Ok(_)) => Read::Failed,
        _ => {
            *conn = None;
            Read::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_reads_orders_and_users() {
        let o: Observed = serde_json::from_str(
            r#"{"id":"x","status":"CONFIRMED","ticketId":"t","quantity":1,"createdAt":"2025-01-01T00:00:00Z","processedAt":"2025-01-01T00:00:01.5Z"}"#,
        )
        .unwrap();
        assert!(o.is_final());
        assert_eq!(o.processed_at.unwrap().timestamp_millis(), 1_735_689_601_500);
        let u: Observed = serde_json::from_str(r#"{"id":"x","status":"PENDING"}"#).unwrap();
        assert!(!u.is_final());
    }
}
