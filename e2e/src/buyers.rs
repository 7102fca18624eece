//! Concurrent buyers. Each order is one (user, Idempotency-Key); a client that
//! gets a 503 or loses its connection retries with the same key, as the
//! contract tells it to, so every accepted order is known by its id.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

/// Creates a ticket through the admin route and returns its id.
pub async fn create_ticket(base: &str, total: u32, max_per_order: u32) -> anyhow::Result<Uuid> {
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/tickets"))
        .bearer_auth(tps_testkit::token("e2e-admin", true))
        .json(&json!({"name": "e2e ticket", "totalQuantity": total, "priceCents": 1000, "maxPerOrder": max_per_order}))
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 201, "create ticket: {} {}", resp.status(), resp.text().await?);
    let body: Value = resp.json().await?;
    Ok(body["id"].as_str().unwrap_or_default().parse()?)
}

/// What the buyers saw.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Accepted orders: id → (user, quantity), de-duplicated by id.
    pub accepted: HashMap<Uuid, (String, u32)>,
    /// Answers by status code (every attempt, retries included).
    pub statuses: HashMap<u16, usize>,
    /// 202s that carried `Idempotent-Replayed: true`.
    pub replays: usize,
    /// Orders given up after all retries (never acknowledged).
    pub abandoned: usize,
    /// The final status per (user, Idempotency-Key).
    pub answers: HashMap<(String, String), u16>,
    /// Keys that got two different final answers (a broken replay).
    pub inconsistent: usize,
}

impl Outcome {
    fn record_final(&mut self, order: &Planned, status: u16) {
        let key = (order.user.clone(), order.key.clone());
        if let Some(previous) = self.answers.insert(key, status) {
            self.inconsistent += usize::from(previous != status);
        }
    }
}

/// One planned order.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Buyer.
    pub user: String,
    /// Idempotency-Key.
    pub key: String,
    /// Ticket.
    pub ticket: Uuid,
    /// Quantity.
    pub quantity: u32,
}

/// A fleet of concurrent buyers against one or more api base URLs.
pub struct Buyers {
    bases: Vec<String>,
    concurrency: usize,
    retry_for: Duration,
}

impl Buyers {
    /// Buyers spread round-robin over `bases`, `concurrency` requests in flight.
    pub fn new(bases: Vec<String>, concurrency: usize) -> Self {
        Self { bases, concurrency, retry_for: Duration::from_secs(90) }
    }

    /// How long one order may keep retrying before it is abandoned.
    pub fn retry_for(mut self, d: Duration) -> Self {
        self.retry_for = d;
        self
    }

    /// `n` orders from `users` users for `ticket`; every `dup_every`-th order reuses
    /// the previous order's key and body (a client retry), so replays are mixed in.
    pub fn plan(
        n: usize,
        users: usize,
        ticket: Uuid,
        quantity: impl Fn(usize) -> u32,
        dup_every: usize,
    ) -> Vec<Planned> {
        let mut plan: Vec<Planned> = Vec::with_capacity(n);
        for i in 0..n {
            if dup_every > 0 && i > 0 && i % dup_every == 0 {
                let prev = plan[i - 1].clone();
                plan.push(prev);
                continue;
            }
            plan.push(Planned {
                user: format!("user-{}", i % users),
                key: format!("k-{i}"),
                ticket,
                quantity: quantity(i),
            });
        }
        plan
    }

    /// Sends every planned order; returns what was acknowledged.
    pub async fn run(&self, plan: Vec<Planned>) -> Outcome {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(self.concurrency)
            .build()
            .expect("client");
        let outcome = Arc::new(Mutex::new(Outcome::default()));
        let next = Arc::new(AtomicUsize::new(0));
        futures::stream::iter(plan)
            .for_each_concurrent(self.concurrency, |order| {
                let (client, outcome, next) = (client.clone(), outcome.clone(), next.clone());
                async move {
                    let base = &self.bases[next.fetch_add(1, Ordering::Relaxed) % self.bases.len()];
                    self.place(&client, base, order, &outcome).await;
                }
            })
            .await;
        Arc::try_unwrap(outcome).expect("all buyers done").into_inner()
    }

    async fn place(&self, client: &reqwest::Client, base: &str, order: Planned, outcome: &Mutex<Outcome>) {
        let token = tps_testkit::token(&order.user, false);
        let deadline = tokio::time::Instant::now() + self.retry_for;
        let mut backoff = Duration::from_millis(50);
        let mut base = base.to_owned();
        loop {
            let sent = client
                .post(format!("{base}/v1/orders"))
                .bearer_auth(&token)
                .header("Idempotency-Key", &order.key)
                .json(&json!({"ticketId": order.ticket, "quantity": order.quantity}))
                .send()
                .await;
            let retry = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let replayed = resp.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
                    let body: Value = resp.json().await.unwrap_or(Value::Null);
                    let mut o = outcome.lock().await;
                    *o.statuses.entry(status).or_default() += 1;
                    if !matches!(status, 429 | 500..=599) {
                        o.record_final(&order, status);
                    }
                    match status {
                        202 => {
                            o.replays += usize::from(replayed);
                            let id: Uuid =
                                body["id"].as_str().and_then(|s| s.parse().ok()).expect("202 carries an id");
                            o.accepted.insert(id, (order.user.clone(), order.quantity));
                            return;
                        }
                        503 | 429 | 500..=599 => true,
                        _ => return,
                    }
                }
                Err(_) => true,
            };
            if retry && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                // A client behind a load balancer lands on another pod when one goes away.
                if self.bases.len() > 1 {
                    base = self.bases
                        [(self.bases.iter().position(|b| *b == base).unwrap_or(0) + 1) % self.bases.len()]
                    .clone();
                }
                continue;
            }
            outcome.lock().await.abandoned += 1;
            return;
        }
    }
}
