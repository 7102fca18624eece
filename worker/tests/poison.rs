//! Poison messages go to DEAD_LETTERS with a reason and delivery count, and the
//! rest of the shard keeps flowing.

mod common;

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use common::{Harness, InProcess, order};
use futures::StreamExt;
use tps_contract::subject::{
    DEAD_LETTER_DELIVERIES_HEADER, DEAD_LETTER_MSG_ID_HEADER, DEAD_LETTER_REASON_HEADER,
    DEAD_LETTER_SEQUENCE_HEADER, DEAD_LETTER_SETTLED_HEADER, DEAD_LETTER_STREAM, DEAD_LETTER_SUBJECT_HEADER,
    order_subject,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_and_always_failing_messages_are_dead_lettered() {
    let h = Harness::start(1).await;
    let ticket = h.ticket_on(0, 100, 5).await;
    let before: Vec<_> = (0..20).map(|_| order(ticket, 1)).collect();
    h.publish(&before).await;
    h.publish_raw(&order_subject(0), b"{not json".to_vec(), "garbage-1").await.await.unwrap();
    // Decodes, but Postgres refuses a NUL in text: it fails every time it is settled.
    let mut cursed = order(ticket, 1);
    cursed.user_id = "nul\u{0}user".into();
    h.publish(std::slice::from_ref(&cursed)).await;
    let after: Vec<_> = (0..20).map(|_| order(ticket, 1)).collect();
    h.publish(&after).await;

    let worker = InProcess::start(h.config(&["--max-deliveries=3", "--batch-size=100"]));
    h.wait_settled(40, Duration::from_secs(20)).await;
    let letters = dead_letters(&h, 2, Duration::from_secs(20)).await;
    h.wait_drained(Duration::from_secs(20)).await;
    worker.stop().await;

    let ids: Vec<_> = letters.iter().map(|l| (l.msg_id.clone(), l.reason.clone())).collect();
    let garbage = letters
        .iter()
        .find(|l| l.msg_id == "garbage-1")
        .unwrap_or_else(|| panic!("the undecodable message: {ids:?}"));
    assert!(garbage.reason.starts_with("undecodable"), "{}", garbage.reason);
    assert_eq!(garbage.deliveries, "1", "undecodable goes at once");
    let failing =
        letters.iter().find(|l| l.msg_id == cursed.order_id.to_string()).expect("the failing message");
    assert_eq!(failing.deliveries, "3");
    assert!(failing.reason.contains("failed 3 deliveries"), "{}", failing.reason);
    assert!(failing.reason.contains("not storable as rejected either"), "{}", failing.reason);
    assert_eq!(failing.settled_as, "", "a command Postgres cannot store at all stays only a dead letter");
    assert_eq!(failing.subject, "orders.0");
    assert_eq!(failing.payload, serde_json::to_vec(&cursed).unwrap(), "the payload is kept for replay");
    assert!(!failing.sequence.is_empty());

    assert_eq!(h.settled().await, 40, "everything else settled");
    assert_eq!(h.available(ticket).await, 60);
}

struct Letter {
    msg_id: String,
    reason: String,
    deliveries: String,
    subject: String,
    sequence: String,
    settled_as: String,
    payload: Vec<u8>,
}

async fn dead_letters(h: &Harness, n: usize, timeout: Duration) -> Vec<Letter> {
    let stream = h.js.get_stream(DEAD_LETTER_STREAM).await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config { deliver_policy: DeliverPolicy::All, ..Default::default() })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut letters = Vec::new();
    while letters.len() < n {
        let m = tokio::time::timeout(timeout, messages.next())
            .await
            .expect("dead letters arrive")
            .unwrap()
            .unwrap();
        let header = |k: &str| {
            m.headers.as_ref().and_then(|h| h.get(k)).map(|v| v.as_str().to_owned()).unwrap_or_default()
        };
        letters.push(Letter {
            msg_id: header(DEAD_LETTER_MSG_ID_HEADER),
            reason: header(DEAD_LETTER_REASON_HEADER),
            deliveries: header(DEAD_LETTER_DELIVERIES_HEADER),
            subject: header(DEAD_LETTER_SUBJECT_HEADER),
            sequence: header(DEAD_LETTER_SEQUENCE_HEADER),
            settled_as: header(DEAD_LETTER_SETTLED_HEADER),
            payload: m.payload.to_vec(),
        });
        m.ack().await.unwrap();
    }
    letters
}

/// A decodable order that fails every delivery is given up on: stored REJECTED `INVALID`
/// with the failure in `detail`, announced to its owner, copied to DEAD_LETTERS with how
/// it was settled, and its stock untouched. Sent again (as a replay would), nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_given_up_on_ends_rejected_once_and_takes_no_stock() {
    let h = Harness::start(1).await;
    // A "bug" that refuses to confirm one user's orders; a rejection can still be stored.
    for statement in [
        "CREATE FUNCTION refuse_cursed() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.user_id = 'cursed' AND NEW.status = 'CONFIRMED' THEN RAISE EXCEPTION 'cursed order refused'; END IF;
         RETURN NEW; END $$",
        "CREATE TRIGGER refuse_cursed BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION refuse_cursed()",
    ] {
        sqlx::query(statement).execute(&h.pool).await.unwrap();
    }
    let ticket = h.ticket_on(0, 100, 5).await;
    let nats = async_nats::connect(h.stack.nats.url()).await.unwrap();
    let mut events = nats.subscribe(tps_contract::subject::ORDER_EVENTS).await.unwrap();
    nats.flush().await.unwrap();

    let mut cursed = order(ticket, 4);
    cursed.user_id = "cursed".into();
    let before: Vec<_> = (0..10).map(|_| order(ticket, 1)).collect();
    let after: Vec<_> = (0..10).map(|_| order(ticket, 1)).collect();
    h.publish(&before).await;
    h.publish(std::slice::from_ref(&cursed)).await;
    h.publish(&after).await;

    let worker = InProcess::start(h.config(&["--max-deliveries=3", "--batch-size=100"]));
    h.wait_settled(21, Duration::from_secs(30)).await;
    let letters = dead_letters(&h, 1, Duration::from_secs(20)).await;
    h.wait_drained(Duration::from_secs(20)).await;

    let row: (String, Option<String>, Option<String>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT status, reason, detail, processed_at FROM orders WHERE id = $1")
            .bind(cursed.order_id)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!((row.0.as_str(), row.1.as_deref()), ("REJECTED", Some("INVALID")));
    let detail = row.2.clone().unwrap_or_default();
    assert!(detail.contains("failed 3 deliveries") && detail.contains("cursed order refused"), "{detail}");
    assert_eq!(h.available(ticket).await, 80, "the 20 others took 20, the rejected order nothing");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].msg_id, cursed.order_id.to_string());
    assert_eq!(letters[0].settled_as, "REJECTED INVALID");
    assert_eq!(letters[0].deliveries, "3");

    // Its owner is told: an order.updated event with the final status.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("the rejection is announced")
            .unwrap();
        let batch: Vec<serde_json::Value> = tps_contract::event::decode_events(&m.payload).unwrap();
        if let Some(event) = batch.iter().find(|e| e["order"]["id"] == cursed.order_id.to_string()) {
            assert_eq!(event["order"]["status"], "REJECTED", "{event}");
            assert_eq!(event["order"]["reason"], "INVALID", "{event}");
            break;
        }
    }

    // Sent again under a new msg-id, as a replay does: nothing changes, no new letter.
    h.publish_as(&cursed, "replayed-1").await.await.unwrap();
    h.wait_drained(Duration::from_secs(20)).await;
    worker.stop().await;
    let again: (String, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT status, processed_at FROM orders WHERE id = $1")
            .bind(cursed.order_id)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(again, (row.0, row.3), "the settled rejection is final");
    assert_eq!(h.settled().await, 21);
    assert_eq!(h.available(ticket).await, 80);
    let stream = h.js.get_stream(DEAD_LETTER_STREAM).await.unwrap();
    assert_eq!(stream.get_info().await.unwrap().state.messages, 1, "no second dead letter");
}
