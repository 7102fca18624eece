//! Live updates across pods, through the real binaries: two api processes and
//! one worker. An order placed through api A reaches its owner's connections on
//! both pods and nobody else's; every connection sees the stock fall; the
//! listing on the other pod follows within a second.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tps_e2e::create_ticket;
use tps_testkit::{AppProcess, Stack, token};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_with_query_token(api: &AppProcess, user: &str) -> Socket {
    let url = format!("{}/v1/events?token={}", api.url().replace("http://", "ws://"), token(user, false));
    tokio_tungstenite::connect_async(url).await.expect("websocket opens").0
}

async fn ws_with_header(api: &AppProcess, user: &str) -> Socket {
    let mut request =
        format!("{}/v1/events", api.url().replace("http://", "ws://")).into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {}", token(user, false)).parse().unwrap());
    tokio_tungstenite::connect_async(request).await.expect("websocket opens").0
}

/// A socket and the events read from it that no wait has claimed yet. Stock and order events
/// travel on different subjects, so either may arrive first; a wait for one must not lose the other.
struct Client {
    socket: Socket,
    unclaimed: Vec<Value>,
}

impl Client {
    fn new(socket: Socket) -> Self {
        Self { socket, unclaimed: Vec::new() }
    }

    /// Every JSON event that arrives within `window`, plus those read earlier and not yet claimed.
    async fn events_within(&mut self, window: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + window;
        let mut events = std::mem::take(&mut self.unclaimed);
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, self.socket.next()).await {
            if let Message::Text(text) = msg.expect("a valid frame") {
                events.push(serde_json::from_str(&text).unwrap());
            }
        }
        events
    }

    /// The first event, earlier unclaimed or newly read, that matches `pred`; panics after 30 s
    /// (the worker may still be taking its shards). Events that do not match are kept.
    async fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(at) = self.unclaimed.iter().position(&pred) {
            return self.unclaimed.remove(at);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let msg =
                tokio::time::timeout_at(deadline, self.socket.next()).await.expect("the event within 30 s");
            if let Message::Text(text) = msg.expect("open").expect("a valid frame") {
                let event: Value = serde_json::from_str(&text).unwrap();
                if pred(&event) {
                    return event;
                }
                self.unclaimed.push(event);
            }
        }
    }
}

/// The `data:` events of an SSE response until `pred` matches one; panics after 10 s.
async fn sse_wait_for(
    response: &mut reqwest::Response,
    buffer: &mut String,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data:")) {
                let event: Value = serde_json::from_str(data.trim()).unwrap();
                if pred(&event) {
                    return event;
                }
            }
        }
        let chunk = tokio::time::timeout_at(deadline, response.chunk()).await.expect("the event within 10 s");
        buffer.push_str(std::str::from_utf8(&chunk.unwrap().expect("the stream stays open")).unwrap());
    }
}

fn is_order(event: &Value) -> bool {
    event["type"] == "order.updated"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_placed_on_api_a_reaches_its_owner_on_api_b_and_nobody_else() {
    let stack = Stack::start().await.unwrap();
    let api_a = AppProcess::api(&stack, 4, &[]).await.unwrap();
    let api_b = AppProcess::api(&stack, 4, &[]).await.unwrap();
    let worker = AppProcess::worker(&stack, 4, &[]).await.unwrap();
    let ticket = create_ticket(api_a.url(), 100, 5).await.unwrap();

    let mut alice_on_b = Client::new(ws_with_query_token(&api_b, "alice").await);
    let mut alice_on_a = Client::new(ws_with_header(&api_a, "alice").await);
    let mut bob_on_a = Client::new(ws_with_query_token(&api_a, "bob").await);
    let mut bob_on_b = Client::new(ws_with_header(&api_b, "bob").await);
    let http = reqwest::Client::new();
    let mut carol_sse_on_b = http
        .get(format!("{}/v1/events", api_b.url()))
        .bearer_auth(token("carol", false))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(carol_sse_on_b.status(), 200);

    let placed = http
        .post(format!("{}/v1/orders", api_a.url()))
        .bearer_auth(token("alice", false))
        .header("Idempotency-Key", "live-1")
        .json(&json!({"ticketId": ticket, "quantity": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 202);
    let order_id = placed.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    let pushed = tokio::time::timeout(Duration::from_secs(30), alice_on_b.wait_for(is_order))
        .await
        .unwrap_or_else(|_| panic!("no order.updated on api B; worker log:\n{}", worker.log_tail()));
    let pushed_at = Instant::now();
    assert_eq!(pushed["order"]["id"], order_id.as_str());
    assert_eq!(pushed["order"]["status"], "CONFIRMED");
    assert_eq!(pushed["order"]["quantity"], 2);
    assert!(pushed["order"]["processedAt"].is_string(), "{pushed}");
    assert_eq!(alice_on_a.wait_for(is_order).await["order"]["id"], order_id.as_str());

    // Everyone, on either pod, over either transport, sees the stock fall.
    let sold = |e: &Value| e["type"] == "ticket.updated" && e["ticketId"] == ticket.to_string().as_str();
    for socket in [&mut alice_on_b, &mut alice_on_a, &mut bob_on_a, &mut bob_on_b] {
        let update = socket.wait_for(sold).await;
        assert_eq!(
            (update["available"].as_i64(), update["soldOut"].as_bool()),
            (Some(98), Some(false)),
            "{update}"
        );
    }
    let mut buffer = String::new();
    let update = sse_wait_for(&mut carol_sse_on_b, &mut buffer, |e| is_order(e) || sold(e)).await;
    assert_eq!(update["type"], "ticket.updated", "carol never gets alice's order");
    assert_eq!(update["available"], 98);

    // Bob's connections, on both pods, never get alice's order.
    for socket in [&mut bob_on_a, &mut bob_on_b] {
        let late = socket.events_within(Duration::from_millis(500)).await;
        assert!(!late.iter().any(is_order), "{late:?}");
    }

    // The listing on the other pod reflects the sale within a second of the push.
    loop {
        let page: Value =
            http.get(format!("{}/v1/tickets", api_b.url())).send().await.unwrap().json().await.unwrap();
        let listed = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == ticket.to_string().as_str())
            .cloned();
        if listed.as_ref().is_some_and(|t| t["available"] == 98) {
            break;
        }
        assert!(
            pushed_at.elapsed() < Duration::from_secs(1),
            "api B still lists {listed:?} 1 s after the sale"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A pod stopped as in a rolling update (SIGTERM) says goodbye on every WebSocket it holds: a
/// close frame 1001 "server shutting down" before the process exits, so that browsers
/// reconnect to another pod at once instead of seeing a connection cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopping_pod_closes_every_websocket_with_going_away_before_it_exits() {
    const CLIENTS: usize = 200;
    let stack = Stack::start().await.unwrap();
    let mut api = AppProcess::api(&stack, 4, &[]).await.unwrap();
    let users: Vec<String> = (0..CLIENTS).map(|i| format!("leaver-{i}")).collect();
    let sockets = futures::future::join_all(users.iter().map(|user| ws_with_query_token(&api, user))).await;
    let goodbyes: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            tokio::spawn(async move {
                while let Some(Ok(msg)) = socket.next().await {
                    if let Message::Close(frame) = msg {
                        return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                    }
                }
                None
            })
        })
        .collect();

    let code = tokio::task::spawn_blocking(move || {
        let code = api.terminate(Duration::from_secs(20));
        (code, api.log_tail())
    })
    .await
    .unwrap();
    assert_eq!(code.0, Some(0), "the api exits cleanly on SIGTERM:\n{}", code.1);
    let mut cut = 0;
    for goodbye in goodbyes {
        let frame =
            tokio::time::timeout(Duration::from_secs(10), goodbye).await.expect("each socket ends").unwrap();
        match frame {
            Some((code, reason)) => {
                assert_eq!(code, 1001, "going away");
                assert_eq!(reason, "server shutting down");
            }
            None => cut += 1,
        }
    }
    assert_eq!(cut, 0, "{cut} of {CLIENTS} WebSockets were cut without a close frame");
}
