//! The harness itself: servers start, answer, die and come back.

use std::time::Duration;

use tps_testkit::{Nats, Postgres, Redis, Stack};

#[tokio::test]
async fn stack_starts_and_postgres_survives_a_restart() {
    let mut stack = Stack::start().await.unwrap();
    let pool = sqlx::PgPool::connect(&stack.database_url).await.unwrap();
    sqlx::query("CREATE TABLE t (x int)").execute(&pool).await.unwrap();
    sqlx::query("INSERT INTO t VALUES (42)").execute(&pool).await.unwrap();
    pool.close().await;

    stack.postgres.stop();
    use sqlx::Connection;
    assert!(sqlx::PgConnection::connect(&stack.database_url).await.is_err(), "postgres should be down");
    stack.postgres.start_again().await.unwrap();
    let pool = sqlx::PgPool::connect(&stack.database_url).await.unwrap();
    let x: i32 = sqlx::query_scalar("SELECT x FROM t").fetch_one(&pool).await.unwrap();
    assert_eq!(x, 42);
}

#[tokio::test]
async fn nats_keeps_jetstream_messages_across_kill() {
    let mut nats = Nats::start().await.unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "S".into(),
        subjects: vec!["s.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish("s.1", "hello".into()).await.unwrap().await.unwrap();

    nats.kill();
    nats.start_again().await.unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("S").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
}

#[tokio::test]
async fn redis_restarts_empty_on_the_same_port() {
    let mut redis = Redis::start().await.unwrap();
    let url = redis.url();
    redis.kill();
    assert!(tokio::net::TcpStream::connect(url.trim_start_matches("redis://")).await.is_err());
    redis.start_again().await.unwrap();
    assert!(tokio::net::TcpStream::connect(url.trim_start_matches("redis://")).await.is_ok());
}

#[tokio::test]
async fn two_postgres_clusters_are_independent() {
    let (a, b) = tokio::join!(Postgres::start(), Postgres::start());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.port(), b.port());
    tokio::time::timeout(Duration::from_secs(10), sqlx::PgPool::connect(&a.url())).await.unwrap().unwrap();
}
