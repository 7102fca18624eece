//! `GET /v1/events` over real HTTP: auth, WebSocket and SSE, routing by owner,
//! broadcast of stock, and a client that stops reading. The test plays the
//! worker and publishes the events on core NATS itself.

mod common;

use std::time::Duration;

use common::{TestApi, problem};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tps_contract::event::OrderView;
use tps_contract::subject::{ORDER_EVENTS, TICKET_EVENTS};
use tps_contract::{OrderStatus, OrderUpdated, TicketUpdated};
use tps_testkit::token;
use uuid::Uuid;

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/v1/events` for `user`, with the token in `?token=` or in the header.
async fn connect(api: &TestApi, user: &str, in_query: bool) -> Socket {
    let base = api.url.replace("http://", "ws://");
    let socket = if in_query {
        tokio_tungstenite::connect_async(format!("{base}/v1/events?token={}", token(user, false))).await
    } else {
        let mut request = format!("{base}/v1/events").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {}", token(user, false)).parse().unwrap());
        tokio_tungstenite::connect_async(request).await
    };
    socket.expect("websocket opens").0
}

/// The next JSON text message, skipping pings; panics after 5 s.
async fn next_event(socket: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("an event within 5 s")
            .expect("the socket stays open")
            .expect("a valid frame");
        if let Message::Text(text) = msg {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// Nothing but pings for `wait`.
async fn assert_silent(socket: &mut Socket, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(msg) = tokio::time::timeout_at(deadline, socket.next()).await {
        match msg {
            Some(Ok(Message::Text(text))) => panic!("unexpected event: {text}"),
            Some(Ok(_)) => {}
            other => panic!("socket ended: {other:?}"),
        }
    }
}

fn order_event(user: &str, status: OrderStatus) -> OrderUpdated {
    OrderUpdated {
        user_id: user.to_owned(),
        order: OrderView {
            id: Uuid::now_v7(),
            status,
            reason: None,
            ticket_id: Uuid::now_v7(),
            quantity: 1,
            created_at: chrono::Utc::now(),
            processed_at: Some(chrono::Utc::now()),
        },
    }
}

async fn publish(nats: &async_nats::Client, subject: &'static str, event: &impl serde::Serialize) {
    nats.publish(subject, serde_json::to_vec(event).unwrap().into()).await.unwrap();
    nats.flush().await.unwrap();
}

#[tokio::test]
async fn a_token_is_required_and_plain_gets_are_refused() {
    let api = TestApi::start().await;
    problem(api.get("/v1/events").send().await.unwrap(), 401).await;
    problem(api.get("/v1/events?token=nonsense").send().await.unwrap(), 401).await;
    let sse = api.get("/v1/events").header("accept", "text/event-stream").send().await.unwrap();
    problem(sse, 401).await;
    let ws =
        tokio_tungstenite::connect_async(format!("{}/v1/events", api.url.replace("http://", "ws://"))).await;
    assert!(ws.is_err(), "no upgrade without a token");
    let plain = api.get("/v1/events").bearer_auth(token("alice", false)).send().await.unwrap();
    problem(plain, 400).await;
}

#[tokio::test]
async fn order_updates_reach_their_owner_only_and_ticket_updates_everyone() {
    let api = TestApi::start().await;
    let nats = async_nats::connect(api.stack.nats.url()).await.unwrap();
    let mut alice_browser = connect(&api, "alice", true).await;
    let mut alice_app = connect(&api, "alice", false).await;
    let mut bob = connect(&api, "bob", true).await;

    let mine = order_event("alice", OrderStatus::Confirmed);
    publish(&nats, ORDER_EVENTS, &mine).await;
    for socket in [&mut alice_browser, &mut alice_app] {
        let got = next_event(socket).await;
        assert_eq!(got["type"], "order.updated");
        assert_eq!(got["order"], serde_json::to_value(&mine.order).unwrap());
        assert!(got.get("userId").is_none(), "the contract shape, nothing more");
    }

    let stock = TicketUpdated { ticket_id: Uuid::now_v7(), available: 41, sold_out: false };
    publish(&nats, TICKET_EVENTS, &stock).await;
    for socket in [&mut alice_browser, &mut alice_app, &mut bob] {
        let got = next_event(socket).await;
        assert_eq!(
            got,
            json!({"type": "ticket.updated", "ticketId": stock.ticket_id, "available": 41, "soldOut": false})
        );
    }
    assert_silent(&mut bob, Duration::from_millis(300)).await;

    let metrics = api.http.get(&api.metrics_url).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tps_ws_clients 3"), "{metrics}");
    // The one order event, committed (processedAt) just before it was published, was timed.
    assert!(metrics.contains("tps_api_order_event_delay_seconds_count 1"), "{metrics}");
    assert!(metrics.contains("tps_api_order_event_delay_seconds_bucket{le=\"5\"} 1"), "{metrics}");
    // Written to alice's two sockets: timed once per socket; the stock frames are not orders.
    assert!(metrics.contains("tps_api_push_delay_seconds_count 2"), "{metrics}");
    assert!(metrics.contains("tps_api_push_delay_seconds_bucket{le=\"5\"} 2"), "{metrics}");
    bob.close(None).await.unwrap();
}

/// A worker announces a settled batch as one message: an array of events.
#[tokio::test]
async fn a_message_with_a_batch_of_events_reaches_each_owner_and_every_client() {
    let api = TestApi::start().await;
    let nats = async_nats::connect(api.stack.nats.url()).await.unwrap();
    let mut frank = connect(&api, "frank", true).await;
    let mut grace = connect(&api, "grace", false).await;

    let franks = [order_event("frank", OrderStatus::Confirmed), order_event("frank", OrderStatus::Rejected)];
    let graces = order_event("grace", OrderStatus::Confirmed);
    let nobody = order_event("heidi", OrderStatus::Confirmed);
    publish(&nats, ORDER_EVENTS, &[&franks[0], &nobody, &graces, &franks[1]]).await;
    for expected in &franks {
        let got = next_event(&mut frank).await;
        assert_eq!(got["type"], "order.updated");
        assert_eq!(got["order"], serde_json::to_value(&expected.order).unwrap(), "in the batch's order");
    }
    let got = next_event(&mut grace).await;
    assert_eq!(got["order"], serde_json::to_value(&graces.order).unwrap());

    let stock = [
        TicketUpdated { ticket_id: Uuid::now_v7(), available: 7, sold_out: false },
        TicketUpdated { ticket_id: Uuid::now_v7(), available: 0, sold_out: true },
    ];
    publish(&nats, TICKET_EVENTS, &stock).await;
    let expected: Vec<Value> = stock
        .iter()
        .map(|t| json!({"type": "ticket.updated", "ticketId": t.ticket_id, "available": t.available, "soldOut": t.sold_out}))
        .collect();
    for socket in [&mut frank, &mut grace] {
        let mut got = vec![next_event(socket).await, next_event(socket).await];
        got.sort_by_key(|e| e["ticketId"].as_str().unwrap().to_owned());
        let mut want = expected.clone();
        want.sort_by_key(|e| e["ticketId"].as_str().unwrap().to_owned());
        assert_eq!(got, want, "both tickets of the batch");
        assert_silent(socket, Duration::from_millis(300)).await;
    }
    let metrics = api.http.get(&api.metrics_url).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("tps_api_events_received_total{type=\"order\"} 4"),
        "events, not messages: {metrics}"
    );
    assert!(metrics.contains("tps_api_events_received_total{type=\"ticket\"} 2"), "{metrics}");
}

#[tokio::test]
async fn the_same_stream_is_served_as_sse() {
    let api = TestApi::start().await;
    let nats = async_nats::connect(api.stack.nats.url()).await.unwrap();
    let mut sse = api
        .get(&format!("/v1/events?token={}", token("carol", false)))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    assert!(sse.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));

    let mine = order_event("carol", OrderStatus::Rejected);
    publish(&nats, ORDER_EVENTS, &order_event("dave", OrderStatus::Confirmed)).await;
    publish(&nats, ORDER_EVENTS, &mine).await;
    let stock = TicketUpdated { ticket_id: Uuid::now_v7(), available: 0, sold_out: true };
    publish(&nats, TICKET_EVENTS, &stock).await;

    // Order and stock events travel on different subjects, so either may come first.
    let stock_json =
        json!({"type": "ticket.updated", "ticketId": stock.ticket_id, "available": 0, "soldOut": true});
    let mut events = Vec::new();
    let mut buffer = String::new();
    let has_both = |events: &[Value]| {
        events.iter().any(|e| e["type"] == "order.updated") && events.contains(&stock_json)
    };
    while !has_both(&events) {
        let chunk =
            tokio::time::timeout(Duration::from_secs(5), sse.chunk()).await.expect("events within 5 s");
        buffer.push_str(std::str::from_utf8(&chunk.unwrap().expect("the stream stays open")).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data:")) {
                events.push(serde_json::from_str::<Value>(data.trim()).unwrap());
            }
        }
    }
    let orders: Vec<&Value> = events.iter().filter(|e| e["type"] == "order.updated").collect();
    assert_eq!(orders.len(), 1, "only carol's own order: {orders:?}");
    assert_eq!(orders[0]["order"]["id"], mine.order.id.to_string(), "dave's order never reaches carol");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_and_the_others_keep_receiving() {
    let api = TestApi::start_with(&["--events-buffer", "64"]).await;
    let nats = async_nats::connect(api.stack.nats.url()).await.unwrap();
    let mut stalled = connect(&api, "erin", true).await;
    let mut reader = connect(&api, "erin", false).await;
    let last = order_event("erin", OrderStatus::Rejected);
    let last_id = last.order.id.to_string();
    let reading = tokio::spawn(async move {
        let mut seen = 0usize;
        loop {
            let event = next_event(&mut reader).await;
            seen += 1;
            if event["order"]["id"] == last_id.as_str() {
                return seen;
            }
        }
    });

    // Enough to fill the stalled client's socket buffers (a few MiB) and then its
    // queue, paced at about 10,000 a second in bursts well under the queue, so
    // that a client which reads keeps up.
    const EVENTS: usize = 40_000;
    for _ in 0..EVENTS / 16 {
        for _ in 0..16 {
            let event = serde_json::to_vec(&order_event("erin", OrderStatus::Confirmed)).unwrap();
            nats.publish(ORDER_EVENTS, event.into()).await.unwrap();
        }
        nats.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let dropped = "tps_api_events_dropped_clients_total{reason=\"slow\"} 1";
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = api.http.get(&api.metrics_url).send().await.unwrap().text().await.unwrap();
        if metrics.contains(dropped) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metrics.contains(dropped), "{metrics}");
    assert!(metrics.contains("tps_ws_clients 1"), "the reader is still connected: {metrics}");

    publish(&nats, ORDER_EVENTS, &last).await;
    let seen = tokio::time::timeout(Duration::from_secs(30), reading)
        .await
        .expect("the reader got the last event")
        .unwrap();
    assert!(seen > EVENTS / 2, "the reader kept receiving ({seen} events)");

    // The stalled client finds what the kernel held for it, then the end of the connection.
    let mut received = 0;
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(msg)) = stalled.next().await {
            received += usize::from(msg.is_text());
        }
    })
    .await;
    assert!(ended.is_ok(), "the dropped client's connection is closed");
    assert!(received < EVENTS, "it was dropped before the end ({received} of {EVENTS})");
}

/// Runs `work` to completion on a thread and runtime of its own, so that it needs nothing
/// from the test's runtime (whose worker threads also serve the api).
fn on_own_thread<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(work)
    })
}

/// Live updates run on the pod's push lane (`api/src/events/lane.rs`): an order update
/// reaches its owner while every request thread of the api is busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_update_reaches_its_owner_while_every_request_thread_is_busy() {
    let api = TestApi::start().await;
    let nats_url = api.stack.nats.url().to_owned();
    let publish_on_own_thread = |event: OrderUpdated| {
        let url = nats_url.clone();
        on_own_thread(async move {
            let nats = async_nats::connect(url).await.unwrap();
            publish(&nats, ORDER_EVENTS, &event).await;
        })
    };

    // The browser opens and reads on a thread of its own; a first update shows that its
    // connection is served (the upgrade done) before the api's threads are taken.
    let update = order_event("ida", OrderStatus::Rejected);
    let wanted = update.order.id.to_string();
    let url = format!("{}/v1/events?token={}", api.url.replace("http://", "ws://"), token("ida", false));
    let (ready, is_ready) = std::sync::mpsc::channel();
    let browser = on_own_thread(async move {
        let mut socket = tokio_tungstenite::connect_async(url).await.expect("websocket opens").0;
        next_event(&mut socket).await;
        ready.send(()).unwrap();
        loop {
            if next_event(&mut socket).await["order"]["id"] == wanted.as_str() {
                return std::time::Instant::now();
            }
        }
    });
    let mut tries = 0;
    loop {
        publish_on_own_thread(order_event("ida", OrderStatus::Confirmed)).join().unwrap();
        if is_ready.recv_timeout(Duration::from_millis(500)).is_ok() {
            break;
        }
        tries += 1;
        assert!(tries < 20, "the browser never got a first update");
    }

    // Both worker threads of the runtime that serves the api, held for `busy`.
    let busy = Duration::from_secs(3);
    let together = std::sync::Arc::new(std::sync::Barrier::new(3));
    let hogs: Vec<_> = (0..2)
        .map(|_| {
            let together = together.clone();
            tokio::spawn(async move {
                together.wait();
                std::thread::sleep(busy);
            })
        })
        .collect();
    together.wait();
    let held_since = std::time::Instant::now();

    publish_on_own_thread(update).join().unwrap();
    let arrived = browser.join().expect("the browser got the update");
    assert!(
        arrived < held_since + busy,
        "the update arrived {:?} after the request threads were taken, not before they were free",
        arrived - held_since
    );
    for hog in hogs {
        hog.await.unwrap();
    }
}
