//! A real api, in-process on 127.0.0.1:0, against a private testkit stack.

#![allow(dead_code)]

use clap::Parser;
use reqwest::{Client, RequestBuilder, Response};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tps_api::{Config, Server};
use tps_testkit::{Stack, TEST_JWT_SECRET, token};
use uuid::Uuid;

/// Shards of the test ORDERS stream.
pub const SHARDS: u32 = 4;

/// The api and its stack; the server stops when this drops.
pub struct TestApi {
    pub stack: Stack,
    pub url: String,
    pub metrics_url: String,
    pub http: Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// The config a binary would get from `stack.env`, with free ports.
pub fn config(stack: &Stack) -> Config {
    config_with(stack, &[])
}

/// [`config`] plus extra flags; a flag given in `extra` replaces the base's.
pub fn config_with(stack: &Stack, extra: &[&str]) -> Config {
    let (nats, redis, shards) = (stack.nats.url(), stack.redis.url(), SHARDS.to_string());
    let base = [
        ("--nats-url", nats.as_str()),
        ("--database-url", &stack.database_url),
        ("--redis-url", &redis),
        ("--auth-jwt-secret", TEST_JWT_SECRET),
        ("--api-listen", "127.0.0.1:0"),
        ("--metrics-listen", "127.0.0.1:0"),
        ("--shards", &shards),
        ("--publish-timeout-ms", "1000"),
        // As in `Stack::env`: a starved CI host must not trip the 250 ms Redis bound.
        ("--redis-timeout-ms", "2000"),
        ("--rust-log", "warn"),
    ];
    let args = std::iter::once("api")
        .chain(
            base.iter().filter(|(flag, _)| !extra.contains(flag)).flat_map(|(flag, value)| [*flag, *value]),
        )
        .chain(extra.iter().copied());
    Config::try_parse_from(args).expect("test config parses")
}

impl TestApi {
    /// A fresh stack and an api serving it.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A fresh stack and an api with extra flags.
    pub async fn start_with(extra: &[&str]) -> Self {
        Self::start_on(Stack::start().await.expect("stack starts"), extra).await
    }

    /// An api with extra flags on a stack prepared by the test.
    pub async fn start_on(stack: Stack, extra: &[&str]) -> Self {
        let server = Server::bind(&config_with(&stack, extra)).await.expect("api starts");
        let url = format!("http://{}", server.local_addr());
        let metrics_url = format!("http://{}/metrics", server.metrics_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("api serves");
        });
        let http = Client::builder().timeout(std::time::Duration::from_secs(10)).build().unwrap();
        Self { stack, url, metrics_url, http, stop: Some(stop), task: Some(task) }
    }

    /// Stops serving and waits for the drain.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// Polls `/metrics` until every line of `want` is there (gauges are sampled in the
    /// background) and returns the page; panics after 10 s.
    pub async fn metrics_with(&self, want: &[&str]) -> String {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let metrics = self.http.get(&self.metrics_url).send().await.unwrap().text().await.unwrap();
            if want.iter().all(|line| metrics.lines().any(|l| l == *line)) {
                return metrics;
            }
            assert!(tokio::time::Instant::now() < deadline, "{want:?} not in:\n{metrics}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.http.get(format!("{}{path}", self.url))
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.http.post(format!("{}{path}", self.url))
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.http.delete(format!("{}{path}", self.url))
    }

    /// Creates a ticket as an admin and returns its JSON.
    pub async fn create_ticket(&self, name: &str, total: i64, max_per_order: i64) -> Value {
        let resp = self
            .post("/v1/tickets")
            .bearer_auth(token("admin", true))
            .json(&json!({"name": name, "totalQuantity": total, "priceCents": 1500, "maxPerOrder": max_per_order}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "create ticket");
        resp.json().await.unwrap()
    }

    /// Creates a ticket and returns its id.
    pub async fn ticket(&self, total: i64, max_per_order: i64) -> Uuid {
        self.create_ticket("test ticket", total, max_per_order).await["id"].as_str().unwrap().parse().unwrap()
    }

    /// `POST /v1/orders` as `user` with `key`.
    pub async fn order(&self, user: &str, key: &str, body: Value) -> Response {
        self.post("/v1/orders")
            .bearer_auth(token(user, false))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

impl Drop for TestApi {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Asserts an RFC 9457 problem with this status, and returns it.
pub async fn problem(resp: Response, status: u16) -> Value {
    assert_eq!(resp.status(), status, "status");
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status, "{body}");
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(), "{body}");
    body
}

/// Every `Nats-Msg-Id` in the ORDERS stream, read message by message.
pub async fn stored_order_ids(nats_url: &str) -> Vec<Uuid> {
    let client = async_nats::connect(nats_url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("ORDERS").await.unwrap();
    let info = stream.get_info().await.unwrap();
    let mut ids = Vec::new();
    if info.state.messages == 0 {
        return ids;
    }
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let Ok(msg) = stream.get_raw_message(seq).await else { continue };
        let command: tps_contract::OrderCommand = serde_json::from_slice(&msg.payload).unwrap();
        let header = msg.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.as_str().to_owned());
        assert_eq!(header, Some(command.order_id.to_string()), "Nats-Msg-Id is the order id");
        ids.push(command.order_id);
    }
    ids
}
