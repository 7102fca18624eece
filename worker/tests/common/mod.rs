//! Test fixtures: a private stack, tickets, published orders, workers in-process
//! or as processes, and the checks every test ends with.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer::pull};
use chrono::Utc;
use clap::Parser;
use sqlx::{PgPool, Row};
use tps_contract::OrderCommand;
use tps_contract::streams::{StreamLimits, ensure_streams, shard_consumer};
use tps_contract::subject::{MSG_ID_HEADER, ORDERS_STREAM, consumer_name, order_subject};
use tps_testkit::{ChildProcess, Stack};
use tps_worker::{CancellationToken, WorkerConfig};
use uuid::Uuid;

/// Lease ttl of test workers: short, so takeovers are quick.
pub const LEASE_TTL_MS: &str = "1500";
/// ack_wait of the test consumers: a killed worker's batch comes back after this.
pub const ACK_WAIT: Duration = Duration::from_secs(4);

/// A stack with a migrated database, streams and shard consumers.
pub struct Harness {
    pub stack: Stack,
    pub pool: PgPool,
    pub js: jetstream::Context,
    pub shards: u32,
}

impl Harness {
    pub async fn start(shards: u32) -> Self {
        Self::start_with_ack_wait(shards, ACK_WAIT).await
    }

    /// As [`Harness::start`], with the shard consumers' `ack_wait` given.
    pub async fn start_with_ack_wait(shards: u32, ack_wait: Duration) -> Self {
        let stack = Stack::start().await.unwrap();
        let pool = tps_runtime::db::connect(&stack.database_url, 5).await.unwrap();
        tps_runtime::db::migrate(&pool).await.unwrap();
        let js = jetstream::new(async_nats::connect(stack.nats.url()).await.unwrap());
        ensure_streams(&js, &StreamLimits::default()).await.unwrap();
        // Consumers as the contract defines them, but with a short ack_wait (the
        // worker keeps whatever config the consumer has), so kill -9 tests are quick.
        let stream = js.get_stream(ORDERS_STREAM).await.unwrap();
        for shard in 0..shards {
            let config = pull::Config { ack_wait, ..shard_consumer(ORDERS_STREAM, shard) };
            stream.get_or_create_consumer(&consumer_name(ORDERS_STREAM, shard), config).await.unwrap();
        }
        Self { stack, pool, js, shards }
    }

    /// A ticket with `stock` whose orders land on `shard`.
    pub async fn ticket_on(&self, shard: u32, stock: i32, max_per_order: i32) -> Uuid {
        let id = loop {
            let id = Uuid::new_v4();
            if tps_contract::shard_for(&id, self.shards) == shard {
                break id;
            }
        };
        sqlx::query("INSERT INTO tickets (id, name, price_cents, total_quantity, available, max_per_order) VALUES ($1, 'show', 100, $2, $2, $3)")
            .bind(id)
            .bind(stock)
            .bind(max_per_order)
            .execute(&self.pool)
            .await
            .unwrap();
        id
    }

    /// Publishes commands in this order, each with `Nats-Msg-Id` = order id.
    pub async fn publish(&self, commands: &[OrderCommand]) {
        let mut acks = Vec::with_capacity(commands.len());
        for c in commands {
            acks.push(self.publish_as(c, &c.order_id.to_string()).await);
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }

    /// Publishes one command under an explicit `Nats-Msg-Id`.
    pub async fn publish_as(&self, c: &OrderCommand, msg_id: &str) -> jetstream::context::PublishAckFuture {
        let shard = tps_contract::shard_for(&c.ticket_id, self.shards);
        self.publish_raw(&order_subject(shard), serde_json::to_vec(c).unwrap(), msg_id).await
    }

    /// Publishes raw bytes to a subject.
    pub async fn publish_raw(
        &self,
        subject: &str,
        payload: Vec<u8>,
        msg_id: &str,
    ) -> jetstream::context::PublishAckFuture {
        let mut headers = HeaderMap::new();
        headers.insert(MSG_ID_HEADER, msg_id);
        self.js.publish_with_headers(subject.to_owned(), headers, payload.into()).await.unwrap()
    }

    /// Rows in `orders`.
    pub async fn settled(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(&self.pool).await.unwrap_or(-1)
    }

    /// Waits until `orders` holds `n` rows.
    pub async fn wait_settled(&self, n: i64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.settled().await;
            if got == n {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{got} of {n} orders settled after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until no shard has a message pending or unacked.
    pub async fn wait_drained(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        'outer: loop {
            assert!(tokio::time::Instant::now() < deadline, "consumers not drained after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
            for shard in 0..self.shards {
                let mut c: async_nats::jetstream::consumer::PullConsumer = self
                    .js
                    .get_consumer_from_stream(consumer_name(ORDERS_STREAM, shard), ORDERS_STREAM)
                    .await
                    .unwrap();
                let info = c.info().await.unwrap();
                if info.num_pending > 0 || info.num_ack_pending > 0 {
                    continue 'outer;
                }
            }
            return;
        }
    }

    /// `tickets.available`.
    pub async fn available(&self, ticket: Uuid) -> i64 {
        let a: i32 = sqlx::query_scalar("SELECT available FROM tickets WHERE id = $1")
            .bind(ticket)
            .fetch_one(&self.pool)
            .await
            .unwrap();
        a.into()
    }

    /// Orders of a ticket in arrival order: (id, quantity, status, reason).
    pub async fn orders_of(&self, ticket: Uuid) -> Vec<(Uuid, i32, String, Option<String>)> {
        sqlx::query(
            "SELECT id, quantity, status, reason FROM orders WHERE ticket_id = $1 ORDER BY stream_seq",
        )
        .bind(ticket)
        .fetch_all(&self.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("id"), r.get("quantity"), r.get("status"), r.get("reason")))
        .collect()
    }

    /// Asserts the ticket's books balance and every grant followed arrival order:
    /// replaying the rows in stream order with the ledger rules gives the same outcomes.
    pub async fn assert_exact(&self, ticket: Uuid, stock: i64) {
        let rows = self.orders_of(ticket).await;
        let mut remaining = stock;
        for (id, q, status, reason) in &rows {
            let q = i64::from(*q);
            let expected = if q <= remaining {
                remaining -= q;
                ("CONFIRMED", None)
            } else if remaining == 0 {
                ("REJECTED", Some("SOLD_OUT"))
            } else {
                ("REJECTED", Some("INSUFFICIENT_STOCK"))
            };
            assert_eq!(
                (status.as_str(), reason.as_deref()),
                expected,
                "order {id} (qty {q}) out of arrival order"
            );
        }
        assert_eq!(self.available(ticket).await, remaining, "stock does not match the confirmed orders");
    }

    /// First come, first served on one ticket: no order rejected `SOLD_OUT` arrived (stream
    /// sequence) before an order that was confirmed. Returns how many were confirmed and
    /// how many sold out.
    pub async fn assert_first_come_first_served(&self, ticket: Uuid) -> (i64, i64) {
        let (confirmed, sold_out, last_confirmed, first_sold_out): (i64, i64, Option<i64>, Option<i64>) =
            sqlx::query_as(
                "SELECT count(*) FILTER (WHERE status = 'CONFIRMED'), count(*) FILTER (WHERE reason = 'SOLD_OUT'),
                        max(stream_seq) FILTER (WHERE status = 'CONFIRMED'), min(stream_seq) FILTER (WHERE reason = 'SOLD_OUT')
                 FROM orders WHERE ticket_id = $1",
            )
            .bind(ticket)
            .fetch_one(&self.pool)
            .await
            .unwrap();
        if let (Some(last), Some(first)) = (last_confirmed, first_sold_out) {
            let overtaken: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM orders WHERE ticket_id = $1 AND reason = 'SOLD_OUT' AND stream_seq < $2",
            )
            .bind(ticket)
            .bind(last)
            .fetch_one(&self.pool)
            .await
            .unwrap();
            assert!(
                first > last,
                "ticket {ticket}: {overtaken} orders got SOLD_OUT though they arrived before a confirmed one \
                 (first SOLD_OUT at seq {first}, last CONFIRMED at seq {last})"
            );
        }
        (confirmed, sold_out)
    }

    /// Config of an in-process worker on this stack.
    pub fn config(&self, extra: &[&str]) -> WorkerConfig {
        let mut args = vec![
            "worker".to_owned(),
            format!("--nats-url={}", self.stack.nats.url()),
            format!("--database-url={}", self.stack.database_url),
            format!("--redis-url={}", self.stack.redis.url()),
            format!("--shards={}", self.shards),
            "--metrics-listen=127.0.0.1:0".to_owned(),
            format!("--lease-ttl-ms={LEASE_TTL_MS}"),
            "--nak-delay-ms=100".to_owned(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        WorkerConfig::try_parse_from(args).unwrap()
    }

    /// A worker process (`CARGO_BIN_EXE_worker`) on this stack, with extra env.
    pub fn worker_process(&self, name: &str, extra_env: &[(&str, &str)]) -> ChildProcess {
        let mut env = self.stack.env(self.shards);
        env.push(("LEASE_TTL_MS".into(), LEASE_TTL_MS.into()));
        env.push(("NAK_DELAY_MS".into(), "100".into()));
        env.push(("WORKER_ID".into(), format!("{name}-{}", Uuid::new_v4().simple())));
        for (k, v) in extra_env {
            env.push(((*k).into(), (*v).into()));
        }
        let log =
            std::env::temp_dir().join(format!("tps-worker-test-{}-{name}.log", Uuid::new_v4().simple()));
        let mut p = ChildProcess::new(name, env!("CARGO_BIN_EXE_worker"), &[], log).envs(env);
        p.start().unwrap();
        p
    }
}

/// A running in-process worker.
pub struct InProcess {
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), tps_worker::WorkerError>>,
}

impl InProcess {
    pub fn start(config: WorkerConfig) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(tps_worker::run(config, shutdown.clone()));
        Self { shutdown, task }
    }

    /// Drains and waits for a clean return.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task).await.unwrap().unwrap().unwrap();
    }
}

/// An order for `ticket` of `quantity`.
pub fn order(ticket: Uuid, quantity: u32) -> OrderCommand {
    let order_id = Uuid::new_v4();
    OrderCommand {
        order_id,
        user_id: format!("user-{}", order_id.simple()),
        ticket_id: ticket,
        quantity,
        idempotency_key: order_id.to_string(),
        accepted_at: Utc::now(),
    }
}

/// Confirmed quantity per ticket.
pub async fn sold(pool: &PgPool) -> HashMap<Uuid, i64> {
    sqlx::query("SELECT ticket_id, sum(quantity)::bigint AS n FROM orders WHERE status = 'CONFIRMED' GROUP BY ticket_id")
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("ticket_id"), r.get("n")))
        .collect()
}
