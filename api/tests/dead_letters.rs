//! Dead letters over real HTTP: a real worker process dead-letters orders that
//! Postgres refuses, the admin lists them (paged, with reason and delivery
//! count), the cause is fixed, and a replay settles each exactly once. An order
//! the worker can still store as rejected ends REJECTED `INVALID`, readable by its
//! owner, and a replay of its letter is refused (409) and changes nothing.

mod common;

use std::time::Duration;

use common::{SHARDS, TestApi, problem};
use serde_json::{Value, json};
use tps_testkit::{AppProcess, token};

/// A "bug" in the database that refuses one user's orders, as a poison would.
const REFUSE_CURSED: [&str; 2] = [
    "CREATE FUNCTION refuse_cursed() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN IF NEW.user_id = 'cursed' THEN RAISE EXCEPTION 'cursed order refused'; END IF; RETURN NEW; END $$",
    "CREATE TRIGGER refuse_cursed BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION refuse_cursed()",
];

async fn get_json(api: &TestApi, path: &str, bearer: &str) -> Value {
    let resp = api.get(path).bearer_auth(bearer).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.unwrap()
}

async fn order_status(api: &TestApi, user: &str, id: &str) -> String {
    let resp = api.get(&format!("/v1/orders/{id}")).bearer_auth(token(user, false)).send().await.unwrap();
    if resp.status() != 200 {
        return resp.status().to_string();
    }
    resp.json::<Value>().await.unwrap()["status"].as_str().unwrap_or_default().to_owned()
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_orders_are_listed_and_a_replay_settles_them_exactly_once() {
    let api = TestApi::start().await;
    let admin = token("admin", true);
    let ticket = api.ticket(100, 5).await;
    let db = sqlx::PgPool::connect(&api.stack.database_url).await.unwrap();
    for statement in REFUSE_CURSED {
        sqlx::query(statement).execute(&db).await.unwrap();
    }
    let env = [("MAX_DELIVERIES", "2"), ("NAK_DELAY_MS", "100"), ("RUST_LOG", "warn")];
    let worker = AppProcess::worker(&api.stack, SHARDS, &env).await.unwrap();

    let mut cursed = Vec::new();
    for i in 0..3 {
        let resp =
            api.order("cursed", &format!("poison-{i}"), json!({"ticketId": ticket, "quantity": 2})).await;
        assert_eq!(resp.status(), 202);
        cursed.push(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let fine = api.order("fine", "ok", json!({"ticketId": ticket, "quantity": 1})).await;
    let fine = fine.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    wait_for("three dead letters", Duration::from_secs(30), async || {
        get_json(&api, "/v1/admin/dead-letters", &admin).await["items"].as_array().unwrap().len() == 3
    })
    .await;
    assert_eq!(order_status(&api, "fine", &fine).await, "CONFIRMED", "the rest of the shard flows");

    // Paged, oldest first, each with why, from where and after how many deliveries.
    let first = get_json(&api, "/v1/admin/dead-letters?limit=2", &admin).await;
    let cursor = first["nextCursor"].as_str().expect("a second page").to_owned();
    let second = get_json(&api, &format!("/v1/admin/dead-letters?limit=2&cursor={cursor}"), &admin).await;
    assert!(second["nextCursor"].is_null(), "{second}");
    let letters: Vec<Value> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .cloned()
        .collect();
    assert_eq!(letters.len(), 3);
    for letter in &letters {
        assert!(letter["reason"].as_str().unwrap().contains("cursed order refused"), "{letter}");
        assert_eq!(letter["deliveryCount"], 2, "{letter}");
        assert_eq!(letter["originalStream"], "ORDERS");
        assert!(letter["originalSubject"].as_str().unwrap().starts_with("orders."), "{letter}");
        assert!(letter["originalSequence"].as_u64().unwrap() > 0);
        let msg_id = letter["originalMsgId"].as_str().unwrap();
        assert!(cursed.iter().any(|c| c == msg_id), "{letter}");
        assert!(letter["payloadPreview"].as_str().unwrap().contains(msg_id), "{letter}");
    }
    for id in &cursed {
        // This trigger refuses even the rejection: such a command stays only a dead letter.
        assert_eq!(order_status(&api, "cursed", id).await, "PENDING", "a dead letter is not settled");
    }
    for letter in &letters {
        assert!(letter["settledAs"].is_null(), "{letter}");
    }

    // Closed to everyone but admins; unknown and malformed ids are refused.
    problem(api.get("/v1/admin/dead-letters").send().await.unwrap(), 401).await;
    problem(api.get("/v1/admin/dead-letters").bearer_auth(token("cursed", false)).send().await.unwrap(), 403)
        .await;
    let id = letters[0]["id"].as_u64().unwrap();
    let replay = |id: String, bearer: String| {
        api.post(&format!("/v1/admin/dead-letters/{id}/replay")).bearer_auth(bearer).send()
    };
    problem(replay(id.to_string(), token("cursed", false)).await.unwrap(), 403).await;
    problem(replay("999999".into(), admin.clone()).await.unwrap(), 404).await;
    problem(replay("not-a-number".into(), admin.clone()).await.unwrap(), 400).await;

    // The bug is fixed; each replay goes back to its subject and settles once.
    sqlx::query("DROP TRIGGER refuse_cursed ON orders").execute(&db).await.unwrap();
    for letter in &letters {
        let resp = replay(letter["id"].to_string(), admin.clone()).await.unwrap();
        assert_eq!(resp.status(), 202);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["subject"], letter["originalSubject"]);
    }
    problem(replay(id.to_string(), admin.clone()).await.unwrap(), 404).await;
    assert_eq!(get_json(&api, "/v1/admin/dead-letters", &admin).await["items"], json!([]));
    for id in &cursed {
        wait_for("the replayed order to settle", Duration::from_secs(20), async || {
            order_status(&api, "cursed", id).await == "CONFIRMED"
        })
        .await;
    }
    let available: i32 = sqlx::query_scalar("SELECT available FROM tickets WHERE id = $1")
        .bind(ticket)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(available, 100 - 3 * 2 - 1, "each order decremented once");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(&db).await.unwrap();
    assert_eq!(rows, 4);
    drop(worker);
}

/// A "bug" that refuses to confirm one user's orders: the order can still be stored as rejected.
const REFUSE_CONFIRMING_CURSED: [&str; 2] = [
    "CREATE FUNCTION refuse_cursed() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN IF NEW.user_id = 'cursed' AND NEW.status = 'CONFIRMED' THEN RAISE EXCEPTION 'cursed order refused'; END IF;
     RETURN NEW; END $$",
    "CREATE TRIGGER refuse_cursed BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION refuse_cursed()",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_order_ends_rejected_for_its_owner_and_a_replay_changes_nothing() {
    let api = TestApi::start().await;
    let admin = token("admin", true);
    let ticket = api.ticket(10, 5).await;
    let db = sqlx::PgPool::connect(&api.stack.database_url).await.unwrap();
    for statement in REFUSE_CONFIRMING_CURSED {
        sqlx::query(statement).execute(&db).await.unwrap();
    }
    let env = [("MAX_DELIVERIES", "2"), ("NAK_DELAY_MS", "100"), ("RUST_LOG", "warn")];
    let worker = AppProcess::worker(&api.stack, SHARDS, &env).await.unwrap();

    let resp = api.order("cursed", "poison", json!({"ticketId": ticket, "quantity": 3})).await;
    assert_eq!(resp.status(), 202);
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let fine = api.order("fine", "ok", json!({"ticketId": ticket, "quantity": 2})).await;
    let fine = fine.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    // The owner reads a final answer: REJECTED, with a reason from the contract's set.
    let mut order = Value::Null;
    wait_for("the poison order to end final", Duration::from_secs(30), async || {
        let resp =
            api.get(&format!("/v1/orders/{id}")).bearer_auth(token("cursed", false)).send().await.unwrap();
        order = if resp.status() == 200 { resp.json().await.unwrap() } else { Value::Null };
        order["status"] != "PENDING" && !order.is_null()
    })
    .await;
    assert_eq!(order["status"], "REJECTED", "{order}");
    assert_eq!(order["reason"], "INVALID", "{order}");
    assert!(order["processedAt"].is_string(), "{order}");
    wait_for("the other order", Duration::from_secs(20), async || {
        order_status(&api, "fine", &fine).await == "CONFIRMED"
    })
    .await;

    // The letter is kept for the record, and says how the order was settled.
    let mut letters = Value::Null;
    wait_for("the dead letter", Duration::from_secs(20), async || {
        letters = get_json(&api, "/v1/admin/dead-letters", &admin).await;
        letters["items"].as_array().unwrap().len() == 1
    })
    .await;
    let letter = &letters["items"][0];
    assert_eq!(letter["originalMsgId"], id.as_str(), "{letter}");
    assert_eq!(letter["settledAs"], "REJECTED INVALID", "{letter}");
    assert!(letter["reason"].as_str().unwrap().contains("cursed order refused"), "{letter}");
    let detail: Option<String> = sqlx::query_scalar("SELECT detail FROM orders WHERE id = $1")
        .bind(uuid::Uuid::parse_str(&id).unwrap())
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(detail.unwrap_or_default().contains("cursed order refused"), "the failure is kept on the row");

    // Even with the bug fixed, a replay of a settled order is refused and changes nothing.
    sqlx::query("DROP TRIGGER refuse_cursed ON orders").execute(&db).await.unwrap();
    let before: (String, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT status, processed_at FROM orders WHERE id = $1")
            .bind(uuid::Uuid::parse_str(&id).unwrap())
            .fetch_one(&db)
            .await
            .unwrap();
    let last_before = last_order_sequence(&api).await;
    let resp = api
        .post(&format!("/v1/admin/dead-letters/{}/replay", letter["id"]))
        .bearer_auth(admin.clone())
        .send()
        .await
        .unwrap();
    let body = problem(resp, 409).await;
    assert!(body["detail"].as_str().unwrap().contains("REJECTED INVALID"), "{body}");
    assert_eq!(get_json(&api, "/v1/admin/dead-letters", &admin).await["items"].as_array().unwrap().len(), 1);
    assert_eq!(last_order_sequence(&api).await, last_before, "nothing was published again");
    let after: (String, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT status, processed_at FROM orders WHERE id = $1")
            .bind(uuid::Uuid::parse_str(&id).unwrap())
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(after, before);
    assert_eq!(order_status(&api, "cursed", &id).await, "REJECTED");
    let available: i32 = sqlx::query_scalar("SELECT available FROM tickets WHERE id = $1")
        .bind(ticket)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(available, 10 - 2, "the rejected order took no stock");
    drop(worker);
}

/// The last sequence ever stored in ORDERS (whatever the retention removed since).
async fn last_order_sequence(api: &TestApi) -> u64 {
    let js = async_nats::jetstream::new(async_nats::connect(api.stack.nats.url()).await.unwrap());
    js.get_stream("ORDERS").await.unwrap().get_info().await.unwrap().state.last_sequence
}
