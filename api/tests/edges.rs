//! What one client can hold, over real HTTP and raw TCP: half-sent request heads
//! and idle keep-alive connections are closed; a flood of slow bodies meets its
//! deadline (408) without holding the in-flight slots orders need; live
//! connections are capped per user and per pod (429 + Retry-After); the anonymous
//! routes are limited per client IP, read from `X-Forwarded-For` only from trusted
//! proxies; random ticket ids cannot grow the cache; and bad tokens of every kind
//! get 401.

mod common;

use std::time::{Duration, Instant};

use common::{TestApi, problem};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tps_testkit::{Stack, TEST_JWT_SECRET, token};
use uuid::Uuid;

/// Reads until the server closes (EOF or reset); returns what it sent, or `None`
/// if it is still open at `deadline`.
async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn addr(api: &TestApi) -> String {
    api.url.trim_start_matches("http://").to_owned()
}

async fn metric(api: &TestApi, line_start: &str) -> Option<f64> {
    let text = api.http.get(&api.metrics_url).send().await.unwrap().text().await.unwrap();
    text.lines().find(|l| l.starts_with(line_start))?.rsplit(' ').next()?.parse().ok()
}

#[tokio::test]
async fn half_sent_heads_and_idle_keep_alive_connections_are_closed() {
    let api = TestApi::start_with(&["--header-timeout-ms", "1500"]).await;
    let started = Instant::now();
    let mut slow = Vec::new();
    for i in 0..100 {
        let mut s = TcpStream::connect(addr(&api)).await.unwrap();
        // Some send half a head, some nothing at all.
        if i % 2 == 0 {
            s.write_all(b"GET /v1/tickets HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        }
        slow.push(s);
    }
    // A kept-alive connection that goes quiet after one full request.
    let mut idle = TcpStream::connect(addr(&api)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");

    // Meanwhile a normal client is served.
    assert_eq!(api.get("/healthz").send().await.unwrap().status(), 200);

    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, s) in slow.iter_mut().enumerate() {
        let sent = closed_by(s, deadline).await;
        assert!(sent.is_some(), "slow connection {i} still open after {:?}", started.elapsed());
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1_400), "closed by the deadline, not at once: {took:?}");
    assert!(closed_by(&mut idle, deadline).await.is_some(), "the idle keep-alive connection is closed");
    println!(
        "outcome: 100 slow connections all closed {took:?} after opening (deadline 1.5 s); idle one closed"
    );
    let closed = metric(&api, "tps_api_connections_closed_total{why=\"header_timeout\"}").await;
    assert!(closed.unwrap_or(0.0) >= 100.0, "{closed:?}");
    // A new connection: the client's pooled one went idle past the same deadline, and the
    // server may close it just as the client reuses it (hyper's IncompleteMessage).
    let fresh = reqwest::Client::new().get(format!("{}/healthz", api.url)).send().await.unwrap();
    assert_eq!(fresh.status(), 200, "still serving");
    api.stop().await;
}

#[tokio::test]
async fn a_flood_of_slow_bodies_gets_408_and_does_not_delay_orders() {
    // Four slots, a short wait for one: before the body deadline, forty slow
    // sign-ups held all four until the 10 s request deadline, and orders got 503.
    let api = TestApi::start_with(&[
        "--max-in-flight",
        "4",
        "--queue-timeout-ms",
        "2000",
        "--body-timeout-ms",
        "10000",
        "--rate-limit-per-ip",
        "0",
    ])
    .await;
    let ticket = api.ticket(1_000, 1).await;
    let mut slow = Vec::new();
    for _ in 0..40 {
        let mut s = TcpStream::connect(addr(&api)).await.unwrap();
        s.write_all(
            b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"id\":",
        )
        .await
        .unwrap();
        slow.push(s);
    }
    let flood_started = Instant::now();
    // Let the server take every slow request in.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut slowest = Duration::ZERO;
    for i in 0..8 {
        let started = Instant::now();
        let resp = api.order("buyer", &format!("k{i}"), json!({"ticketId": ticket, "quantity": 1})).await;
        let took = started.elapsed();
        assert_eq!(resp.status(), 202, "order {i} during the flood ({took:?})");
        assert!(took < Duration::from_secs(2), "order {i} did not wait for a slot: {took:?}");
        slowest = slowest.max(took);
    }
    assert!(flood_started.elapsed() < Duration::from_secs(9), "the orders ran while the flood was on");

    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, s) in slow.iter_mut().enumerate() {
        let sent = closed_by(s, deadline).await.unwrap_or_else(|| panic!("slow body {i} still open"));
        let text = String::from_utf8_lossy(&sent);
        assert!(text.starts_with("HTTP/1.1 408"), "slow body {i}: {text}");
        assert!(text.contains("application/problem+json"), "{text}");
    }
    assert!(flood_started.elapsed() >= Duration::from_millis(9_500), "the deadline, not before");
    let shed = metric(&api, "tps_api_shed_total{why=\"body_deadline\"}").await;
    assert_eq!(shed, Some(40.0));
    println!(
        "outcome: 8 orders 202 during 40 slow bodies on 4 slots, slowest {slowest:?}; 40 × 408 after {:?}",
        flood_started.elapsed()
    );
    api.stop().await;
}

async fn open_events(api: &TestApi, user: &str) -> Result<impl Sized, (u16, Option<String>, Value)> {
    let mut request =
        format!("{}/v1/events", api.url.replace("http://", "ws://")).into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {}", token(user, false)).parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            let body = serde_json::from_slice(resp.body().as_deref().unwrap_or(b"{}")).unwrap();
            Err((resp.status().as_u16(), retry, body))
        }
        Err(e) => panic!("websocket: {e}"),
    }
}

#[tokio::test]
async fn live_connections_are_capped_per_user_and_per_pod_with_429() {
    let api = TestApi::start_with(&["--events-max-per-user", "3", "--events-max-per-pod", "5"]).await;
    let mut alice = Vec::new();
    for _ in 0..3 {
        alice.push(open_events(&api, "alice").await.unwrap_or_else(|e| panic!("within alice's cap: {e:?}")));
    }
    let (status, retry, body) = open_events(&api, "alice").await.err().expect("alice's 4th socket");
    assert_eq!(status, 429);
    assert_eq!(retry.as_deref(), Some("5"));
    assert!(body["detail"].as_str().unwrap().contains("for this user"), "{body}");
    // SSE counts against the same cap.
    let sse = api.get("/v1/events").bearer_auth(token("alice", false)).header("accept", "text/event-stream");
    let refused = sse.send().await.unwrap();
    assert!(refused.headers().contains_key("retry-after"));
    problem(refused, 429).await;

    let bob1 = open_events(&api, "bob").await.unwrap_or_else(|e| panic!("bob's first: {e:?}"));
    let _bob2 = api
        .get("/v1/events")
        .bearer_auth(token("bob", false))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(_bob2.status(), 200, "an SSE stream within the caps");
    let (status, _, body) = open_events(&api, "carol").await.err().expect("the pod is full");
    assert_eq!(status, 429);
    assert!(body["detail"].as_str().unwrap().contains("on this server"), "{body}");

    // A closed socket frees its place (the server notices the close promptly).
    drop(bob1);
    let deadline = Instant::now() + Duration::from_secs(20);
    let carol = loop {
        match open_events(&api, "carol").await {
            Ok(socket) => break socket,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("carol never got in: {e:?}"),
        }
    };
    drop(carol);
    let metrics = api.http.get(&api.metrics_url).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tps_api_events_refused_total{by=\"user\"} 2"), "{metrics}");
    assert!(metrics.contains("tps_api_events_refused_total{by=\"pod\"}"), "{metrics}");
    drop(alice);
    api.stop().await;
}

#[tokio::test]
async fn anonymous_routes_are_limited_per_client_ip_believing_only_trusted_proxies() {
    // 2 a second, bursts of 4; loopback is the ingress.
    let api = TestApi::start_with(&["--rate-limit-per-ip", "2", "--trusted-proxies", "127.0.0.0/8"]).await;
    let from = |ip: &str| api.get("/v1/tickets").header("x-forwarded-for", format!("6.6.6.6, {ip}"));
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(from("198.51.100.1").send().await.unwrap().status().as_u16());
    }
    assert_eq!(codes[..4], [200, 200, 200, 200], "{codes:?}");
    assert_eq!(codes[4..], [429, 429], "{codes:?}");
    // Another client behind the same proxy has its own bucket, whatever it puts on the left.
    assert_eq!(from("198.51.100.2").send().await.unwrap().status(), 200);
    let limited = from("198.51.100.1").send().await.unwrap();
    assert!(limited.headers().contains_key("retry-after"));
    let body = problem(limited, 429).await;
    assert!(body["detail"].as_str().unwrap().contains("ip"), "{body}");
    // Signed-in routes are limited per user, not per IP.
    for _ in 0..6 {
        let r = api
            .get("/v1/orders")
            .bearer_auth(token("shopper", false))
            .header("x-forwarded-for", "198.51.100.1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    api.stop().await;

    // Without trusted proxies the header is ignored: a client cannot pick a fresh bucket.
    let api = TestApi::start_with(&["--rate-limit-per-ip", "2"]).await;
    let mut codes = Vec::new();
    for i in 0..6 {
        let r = api.get("/v1/tickets").header("x-forwarded-for", format!("203.0.113.{i}")).send().await;
        codes.push(r.unwrap().status().as_u16());
    }
    assert_eq!(codes[4..], [429, 429], "{codes:?}");
    api.stop().await;
}

#[tokio::test]
async fn the_per_ip_limit_is_on_by_default() {
    let api = TestApi::start().await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (http, url) = (api.http.clone(), api.url.clone());
        tasks.push(tokio::spawn(async move {
            let mut limited = 0;
            for _ in 0..50 {
                if http.get(format!("{url}/v1/tickets?limit=1")).send().await.unwrap().status() == 429 {
                    limited += 1;
                }
            }
            limited
        }));
    }
    let mut limited = 0;
    for t in tasks {
        limited += t.await.unwrap();
    }
    // 100 a second with bursts of 200: 1,000 at once cannot all pass.
    assert!(limited > 0, "1,000 anonymous requests from one IP, none limited");
    api.stop().await;
}

#[tokio::test]
async fn a_flood_of_random_ticket_ids_leaves_the_cache_bounded() {
    let api = TestApi::start_with(&["--rate-limit-per-ip", "0", "--unknown-tickets-max", "200"]).await;
    let real = api.ticket(10, 1).await;
    let flood_started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (http, url) = (api.http.clone(), api.url.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..250 {
                let resp = http.get(format!("{url}/v1/tickets/{}", Uuid::new_v4())).send().await.unwrap();
                assert_eq!(resp.status(), 404);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let flood_took = flood_started.elapsed();
    let remembered = metric(&api, "tps_api_ticket_unknown_ids ").await.expect("the gauge is exported");
    assert!(remembered <= 200.0, "unknown ids remembered: {remembered}");
    let postgres = metric(&api, "tps_api_ticket_misses_total{answer=\"postgres\"}").await.unwrap_or(0.0);
    let shed = metric(&api, "tps_api_ticket_misses_total{answer=\"shed\"}").await.unwrap_or(0.0);
    assert_eq!(postgres + shed, 4_000.0, "every random id was a miss, asked or shed");
    println!(
        "outcome: 4,000 random ids in {flood_took:?}: {postgres} asked Postgres, {shed} shed; {remembered} remembered (cap 200)"
    );
    // A repeated unknown id is answered from memory.
    let unknown = Uuid::new_v4();
    for _ in 0..3 {
        problem(api.get(&format!("/v1/tickets/{unknown}")).send().await.unwrap(), 404).await;
    }
    let remembered = metric(&api, "tps_api_ticket_misses_total{answer=\"remembered\"}").await;
    assert!(remembered.unwrap_or(0.0) >= 1.0, "{remembered:?}");
    assert_eq!(api.get(&format!("/v1/tickets/{real}")).send().await.unwrap().status(), 200);
    api.stop().await;
}

fn signed(claims: &Value) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()))
        .unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn forged_expired_not_yet_valid_wrong_audience_and_empty_subject_tokens_get_401() {
    let api = TestApi::start_with(&[
        "--auth-jwt-audience",
        "tps-api",
        "--auth-jwt-issuer",
        "https://id.example",
        "--rate-limit-per-user",
        "0",
    ])
    .await;
    let exp = now() + 3600;
    let good = json!({"sub": "mallory", "exp": exp, "aud": "tps-api", "iss": "https://id.example"});
    let with = |field: &str, value: Value| {
        let mut c = good.clone();
        c[field] = value;
        signed(&c)
    };
    let without = |field: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(field);
        signed(&c)
    };
    let forged =
        encode(&Header::new(Algorithm::HS256), &good, &EncodingKey::from_secret(b"guessed-secret")).unwrap();
    let cases = [
        ("forged", forged),
        ("expired", with("exp", json!(now() - 600))),
        ("not yet valid", with("nbf", json!(now() + 600))),
        ("wrong audience", with("aud", json!("someone-else"))),
        ("no audience", without("aud")),
        ("wrong issuer", with("iss", json!("https://evil.example"))),
        ("no issuer", without("iss")),
        ("empty subject", with("sub", json!(""))),
        ("blank subject", with("sub", json!("   "))),
    ];
    let base = api.url.replace("http://", "ws://");
    for (what, t) in &cases {
        let resp = api.get("/v1/orders").bearer_auth(t).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{what}");
        problem(resp, 401).await;
        let ws = tokio_tungstenite::connect_async(format!("{base}/v1/events?token={t}")).await;
        match ws {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401, "{what} (ws)"),
            other => panic!("{what} (ws): {:?}", other.map(|_| ())),
        }
    }
    let accepted = api.get("/v1/orders").bearer_auth(signed(&good)).send().await.unwrap();
    assert_eq!(accepted.status(), 200, "the right audience and issuer pass");
    let current = with("nbf", json!(now() - 10));
    assert_eq!(api.get("/v1/orders").bearer_auth(current).send().await.unwrap().status(), 200);
    // Plain test tokens carry neither: refused here.
    assert_eq!(api.get("/v1/orders").bearer_auth(token("alice", false)).send().await.unwrap().status(), 401);
    api.stop().await;
}

#[tokio::test]
async fn the_api_refuses_to_start_with_a_short_secret() {
    let stack = Stack::start().await.unwrap();
    let mut config = common::config(&stack);
    config.common.auth_jwt_secret = Some("only-31-bytes-long-secret-here!".into());
    let err = tps_api::Server::bind(&config).await.err().expect("a 31-byte secret is refused");
    assert!(err.to_string().contains("at least 32"), "{err}");
    config.common.auth_jwt_secret = Some("exactly-32-bytes-long-secret-ok!".into());
    assert!(tps_api::Server::bind(&config).await.is_ok(), "32 bytes are enough");
}
