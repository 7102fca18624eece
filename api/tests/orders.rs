//! `POST /v1/orders` and the order reads, over real HTTP against real servers.

mod common;

use common::{TestApi, problem, stored_order_ids};
use serde_json::{Value, json};
use tps_testkit::token;

#[tokio::test]
async fn an_accepted_order_is_durable_pending_at_once_and_replays_identically() {
    let api = TestApi::start().await;
    let ticket = api.ticket(100, 4).await;
    let body = json!({"ticketId": ticket, "quantity": 2});

    let first = api.order("alice", "key-1", body.clone()).await;
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = first.json().await.unwrap();
    assert_eq!(accepted["status"], "PENDING");
    assert_eq!(accepted["ticketId"], ticket.to_string());
    assert_eq!(accepted["quantity"], 2);
    let id = accepted["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/orders/{id}"));

    // Readable at once, as PENDING, by its owner only.
    let read = api.get(&location).bearer_auth(token("alice", false)).send().await.unwrap();
    assert_eq!(read.status(), 200);
    let order: Value = read.json().await.unwrap();
    assert_eq!((order["status"].as_str(), order["quantity"].as_u64()), (Some("PENDING"), Some(2)));
    assert!(order["createdAt"].is_string());
    problem(api.get(&location).bearer_auth(token("mallory", false)).send().await.unwrap(), 404).await;

    // The same key and body: the same status and body, flagged as a replay.
    let replay = api.order("alice", "key-1", body.clone()).await;
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), accepted);

    // The same key with another body: 422, and the original stands.
    let conflict = api.order("alice", "key-1", json!({"ticketId": ticket, "quantity": 1})).await;
    problem(conflict, 422).await;

    // The same key from another user is another order.
    let other = api.order("bob", "key-1", body.clone()).await;
    assert_eq!(other.status(), 202);
    assert_ne!(other.json::<Value>().await.unwrap()["id"], accepted["id"]);

    // The command is in the stream, once, under its order id.
    let stored = stored_order_ids(&api.stack.nats.url()).await;
    assert_eq!(stored.iter().filter(|s| s.to_string() == id).count(), 1, "{stored:?}");
    assert_eq!(stored.len(), 2);
    api.stop().await;
}

#[tokio::test]
async fn orders_list_newest_first_with_pending_ones_and_pages() {
    let api = TestApi::start().await;
    let ticket = api.ticket(100, 5).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let resp = api.order("carol", &format!("k{i}"), json!({"ticketId": ticket, "quantity": 1})).await;
        assert_eq!(resp.status(), 202);
        ids.push(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    api.order("dave", "k0", json!({"ticketId": ticket, "quantity": 1})).await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut req = api.get("/v1/orders").query(&[("limit", "2")]).bearer_auth(token("carol", false));
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c)]);
        }
        let page: Value = req.send().await.unwrap().json().await.unwrap();
        for item in page["items"].as_array().unwrap() {
            assert_eq!(item["status"], "PENDING");
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "carol's orders, newest first, nobody else's");
    problem(api.get("/v1/orders?limit=0").bearer_auth(token("carol", false)).send().await.unwrap(), 400)
        .await;
    problem(
        api.get("/v1/orders?cursor=nonsense").bearer_auth(token("carol", false)).send().await.unwrap(),
        400,
    )
    .await;
    problem(api.get("/v1/orders").send().await.unwrap(), 401).await;
}

#[tokio::test]
async fn malformed_orders_get_400_404_413_415_and_nothing_is_published() {
    let api = TestApi::start().await;
    let ticket = api.ticket(100, 3).await;
    let good = json!({"ticketId": ticket, "quantity": 1});
    let alice = token("alice", false);

    let no_key = api.post("/v1/orders").bearer_auth(&alice).json(&good).send().await.unwrap();
    problem(no_key, 400).await;
    let long_key = "k".repeat(129);
    problem(api.order("alice", &long_key, good.clone()).await, 400).await;
    assert_eq!(api.order("alice", &"k".repeat(128), good.clone()).await.status(), 202);
    let non_ascii = reqwest::header::HeaderValue::from_bytes("clé".as_bytes()).unwrap();
    let resp = api
        .post("/v1/orders")
        .bearer_auth(&alice)
        .header("Idempotency-Key", non_ascii)
        .json(&good)
        .send()
        .await;
    problem(resp.unwrap(), 400).await;
    problem(api.order("alice", "has space", good.clone()).await, 400).await;

    let bad_json = api
        .post("/v1/orders")
        .bearer_auth(&alice)
        .header("Idempotency-Key", "bad-json")
        .header("content-type", "application/json")
        .body("{\"ticketId\": ")
        .send()
        .await
        .unwrap();
    problem(bad_json, 400).await;
    let unknown_field = json!({"ticketId": ticket, "quantity": 1, "price": 0});
    problem(api.order("alice", "unknown-field", unknown_field).await, 400).await;
    problem(api.order("alice", "q0", json!({"ticketId": ticket, "quantity": 0})).await, 400).await;
    problem(api.order("alice", "q4", json!({"ticketId": ticket, "quantity": 4})).await, 400).await;
    problem(api.order("alice", "q-1", json!({"ticketId": ticket, "quantity": -1})).await, 400).await;
    problem(api.order("alice", "no-qty", json!({"ticketId": ticket})).await, 400).await;
    problem(api.order("alice", "bad-id", json!({"ticketId": "nope", "quantity": 1})).await, 400).await;

    let unknown_ticket = json!({"ticketId": uuid::Uuid::new_v4(), "quantity": 1});
    problem(api.order("alice", "unknown-ticket", unknown_ticket).await, 404).await;

    let huge = format!("{{\"ticketId\":\"{ticket}\",\"quantity\":1,\"pad\":\"{}\"}}", "x".repeat(70 * 1024));
    let too_large = api
        .post("/v1/orders")
        .bearer_auth(&alice)
        .header("Idempotency-Key", "huge")
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    problem(too_large, 413).await;
    let text =
        api.post("/v1/orders").bearer_auth(&alice).header("Idempotency-Key", "text").body("hi").send().await;
    problem(text.unwrap(), 415).await;

    assert_eq!(
        stored_order_ids(&api.stack.nats.url()).await.len(),
        1,
        "only the one valid order was published"
    );
}

#[tokio::test]
async fn bad_tokens_get_401_and_non_admins_403() {
    let api = TestApi::start().await;
    let ticket = api.ticket(10, 2).await;
    let body = json!({"ticketId": ticket, "quantity": 1});

    let none = api.post("/v1/orders").header("Idempotency-Key", "k").json(&body).send().await.unwrap();
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    problem(none, 401).await;

    let forged = tps_runtime::auth::mint(b"not-the-secret", "alice", true, 3600);
    let resp =
        api.post("/v1/orders").bearer_auth(forged).header("Idempotency-Key", "k").json(&body).send().await;
    problem(resp.unwrap(), 401).await;

    let expired = expired_token("alice");
    let resp =
        api.post("/v1/orders").bearer_auth(expired).header("Idempotency-Key", "k").json(&body).send().await;
    problem(resp.unwrap(), 401).await;

    let garbage =
        api.get("/v1/orders/00000000-0000-0000-0000-000000000000").header("authorization", "Basic eA==");
    problem(garbage.send().await.unwrap(), 401).await;

    let new_ticket = json!({"name": "x", "totalQuantity": 1, "priceCents": 1});
    let resp = api.post("/v1/tickets").bearer_auth(token("alice", false)).json(&new_ticket).send().await;
    problem(resp.unwrap(), 403).await;
    problem(api.post("/v1/tickets").json(&new_ticket).send().await.unwrap(), 401).await;
}

fn expired_token(user: &str) -> String {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let claims = tps_runtime::auth::Claims { sub: user.into(), exp: 1_000_000, scope: None };
    encode(&Header::default(), &claims, &EncodingKey::from_secret(tps_testkit::TEST_JWT_SECRET.as_bytes()))
        .unwrap()
}

#[tokio::test]
async fn a_sold_out_ticket_gets_409_and_no_order() {
    let api = TestApi::start().await;
    let ticket = api.ticket(0, 2).await;
    let resp = api.order("erin", "sold-out-1", json!({"ticketId": ticket, "quantity": 1})).await;
    assert_eq!(resp.status(), 409);
    let body: Value = resp.json().await.unwrap();
    assert_eq!((body["status"].as_str(), body["reason"].as_str()), (Some("REJECTED"), Some("SOLD_OUT")));
    let id = tps_contract::OrderCommand::id_for("erin", "sold-out-1");
    problem(
        api.get(&format!("/v1/orders/{id}")).bearer_auth(token("erin", false)).send().await.unwrap(),
        404,
    )
    .await;
    assert!(stored_order_ids(&api.stack.nats.url()).await.is_empty());
}
