//! Bad input and bad tokens over real HTTP: randomized property tests of request parsing
//! (arbitrary bodies, Idempotency-Keys and Authorization headers never panic
//! and always get a 4xx problem), wrong-algorithm and unsigned tokens, and
//! routes closed to strangers and non-admins.

mod common;

use common::{TestApi, problem};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::header::HeaderValue;
use serde_json::json;
use tps_testkit::{TEST_JWT_SECRET, token};

const NO_LIMITS: [&str; 4] = ["--rate-limit-per-user", "0", "--rate-limit-per-ip", "0"];

/// A small seeded generator (xorshift64*): the cases are reproducible from the
/// printed seed. (proptest would add a dependency edge to Cargo.lock, which
/// cannot land while main's lock is being edited elsewhere.)
struct Cases(u64);

impl Cases {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn bytes(&mut self, max: u64) -> Vec<u8> {
        (0..self.below(max)).map(|_| self.next() as u8).collect()
    }

    fn visible(&mut self, max: u64) -> String {
        (0..self.below(max)).map(|_| (0x21 + self.below(94) as u8) as char).collect()
    }

    fn text(&mut self, max: u64) -> String {
        (0..self.below(max)).filter_map(|_| char::from_u32(self.below(0x11_0000) as u32)).collect()
    }

    /// Sometimes JSON-shaped, so parsing goes past the first byte.
    fn body(&mut self) -> Vec<u8> {
        match self.below(5) {
            0 => self.bytes(300),
            1 => self.text(100).into_bytes(),
            2 => {
                let id = if self.below(2) == 0 {
                    json!(self.text(40))
                } else {
                    json!(uuid::Uuid::from_u128(u128::from(self.next())))
                };
                let quantity =
                    [json!(self.next() as i64), json!(self.text(5)), json!(null), json!(1.5), json!(0)]
                        [self.below(5) as usize]
                        .clone();
                let mut v = json!({"ticketId": id, "quantity": quantity});
                if self.below(3) == 0 {
                    v[self.text(8)] = json!(self.next());
                }
                v.to_string().into_bytes()
            }
            3 => b"{\"ticketId\":\"00000000-0000-0000-0000-000000000000\",\"quantity\":1}".to_vec(),
            _ => {
                let mut b = br#"{"ticketId":"00000000-0000-0000-0000-000000000000","quantity":1}"#.to_vec();
                let at = self.below(b.len() as u64) as usize;
                b[at] = self.next() as u8;
                b
            }
        }
    }

    fn header(&mut self) -> Vec<u8> {
        match self.below(4) {
            0 => self.bytes(200),
            1 => self.visible(140).into_bytes(),
            2 => format!("Bearer {}", self.text(60)).into_bytes(),
            _ => {
                format!("Bearer {}.{}.{}", self.visible(40), self.visible(80), self.visible(43)).into_bytes()
            }
        }
    }
}

#[tokio::test]
async fn arbitrary_bodies_keys_and_authorization_always_get_a_4xx_problem() {
    let api = TestApi::start_with(&NO_LIMITS).await;
    let valid = token("fuzzer", false);
    let seed = std::env::var("TPS_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("TPS_FUZZ_SEED={seed}");
    let mut cases = Cases(seed);
    for case in 0..400 {
        let body = cases.body();
        let mut request = api.post("/v1/orders").body(body.clone());
        if cases.below(4) != 0 {
            request = request.header("content-type", "application/json");
        }
        // Often a valid token, so the key and the body are reached.
        let auth = match cases.below(3) {
            0 => None,
            1 => HeaderValue::from_bytes(&cases.header()).ok(),
            _ => Some(HeaderValue::from_str(&format!("Bearer {valid}")).unwrap()),
        };
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let key = match cases.below(3) {
            0 => None,
            1 => HeaderValue::from_bytes(&cases.header()).ok(),
            _ => HeaderValue::from_str(&cases.visible(130)).ok(),
        };
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let resp = request.send().await.unwrap();
        let status = resp.status().as_u16();
        let what = format!("case {case} (TPS_FUZZ_SEED={seed}), body {:?}", String::from_utf8_lossy(&body));
        assert!((400..500).contains(&status), "status {status} for {what}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json", "{what}");
        let problem: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(problem["status"].as_u64(), Some(u64::from(status)), "{what}");
    }
    assert_eq!(api.get("/healthz").send().await.unwrap().status(), 200, "still serving");
    api.stop().await;
}

fn signed(alg: Algorithm, claims: &serde_json::Value) -> String {
    encode(&Header::new(alg), claims, &EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes())).unwrap()
}

/// Base64url without padding, as JWT segments are.
fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// The header claims RS256, the signature is an HMAC with the shared secret:
/// the algorithm-confusion attack, which must not be accepted as HS256.
fn rs256_headed(claims: &serde_json::Value) -> String {
    let hs = signed(Algorithm::HS256, claims);
    let signature = hs.rsplit('.').next().unwrap();
    format!("{}.{}.{signature}", b64(br#"{"alg":"RS256","typ":"JWT"}"#), b64(claims.to_string().as_bytes()))
}

#[tokio::test]
async fn forged_expired_unsigned_and_wrong_algorithm_tokens_get_401() {
    let api = TestApi::start_with(&NO_LIMITS).await;
    let admin = json!({"sub": "mallory", "exp": 4_000_000_000u64, "scope": "admin"});
    let tokens = [
        ("forged", tps_runtime::auth::mint(b"guessed-secret", "mallory", true, 3600)),
        ("expired", signed(Algorithm::HS256, &json!({"sub": "mallory", "exp": 1_000_000, "scope": "admin"}))),
        ("no exp", signed(Algorithm::HS256, &json!({"sub": "mallory", "scope": "admin"}))),
        ("no sub", signed(Algorithm::HS256, &json!({"exp": 4_000_000_000u64, "scope": "admin"}))),
        (
            "alg none",
            format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(admin.to_string().as_bytes())),
        ),
        ("HS512", signed(Algorithm::HS512, &admin)),
        ("RS256-headed", rs256_headed(&admin)),
        ("tampered", {
            let t = token("mallory", false);
            let mut parts: Vec<&str> = t.split('.').collect();
            let elevated = b64(admin.to_string().as_bytes());
            parts[1] = &elevated;
            parts.join(".")
        }),
    ];
    for (what, t) in &tokens {
        for (method, path) in
            [("GET", "/v1/orders"), ("GET", "/v1/admin/dead-letters"), ("POST", "/v1/tickets")]
        {
            let request = if method == "GET" { api.get(path) } else { api.post(path).json(&json!({})) };
            let resp = request.bearer_auth(t).send().await.unwrap();
            assert_eq!(resp.status(), 401, "{what} token on {method} {path}");
            problem(resp, 401).await;
        }
    }
    api.stop().await;
}

#[tokio::test]
async fn strangers_get_404_for_others_orders_and_non_admins_403_on_every_admin_route() {
    let api = TestApi::start_with(&NO_LIMITS).await;
    let ticket = api.ticket(10, 2).await;
    let resp = api.order("owner", "mine", json!({"ticketId": ticket, "quantity": 1})).await;
    let id = resp.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/orders/{id}");
    assert_eq!(api.get(&path).bearer_auth(token("owner", false)).send().await.unwrap().status(), 200);
    problem(api.get(&path).bearer_auth(token("stranger", false)).send().await.unwrap(), 404).await;
    let listed = api.get("/v1/orders").bearer_auth(token("stranger", false)).send().await.unwrap();
    assert_eq!(
        listed.json::<serde_json::Value>().await.unwrap()["items"],
        json!([]),
        "a stranger lists nothing"
    );

    let user = token("owner", false);
    let new_ticket = json!({"name": "x", "totalQuantity": 1, "priceCents": 1});
    problem(api.post("/v1/tickets").bearer_auth(&user).json(&new_ticket).send().await.unwrap(), 403).await;
    problem(api.get("/v1/admin/dead-letters").bearer_auth(&user).send().await.unwrap(), 403).await;
    problem(api.post("/v1/admin/dead-letters/1/replay").bearer_auth(&user).send().await.unwrap(), 403).await;
    api.stop().await;
}
