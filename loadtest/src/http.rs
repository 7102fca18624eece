//! A lean HTTP/1.1 keep-alive client: one hyper connection per load worker and
//! no shared pool, so workers never contend on a lock while the clock runs.
//!
//! A bare `hyper::client::conn::http1` connection skips reqwest's pool, URL
//! parsing and redirect layers; the runner shares two cores with the server, so
//! every cycle it saves is the server's (README: "Why raw hyper").

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;

use crate::error::{Error, Result};

/// Where the load goes: a resolved `http://host:port`.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resolved address.
    pub addr: SocketAddr,
    /// The `Host` header value.
    pub authority: HeaderValue,
    /// The base URL as given, without a trailing slash.
    pub base_url: String,
}

impl Target {
    /// Parses and resolves `http://host[:port]` (TLS is not supported: put the runner next to the ingress).
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| Error::BaseUrl { url: url.to_owned(), why: why.to_owned() };
        let base_url = url.trim_end_matches('/').to_owned();
        let rest = base_url.strip_prefix("http://").ok_or_else(|| bad("only http:// is supported"))?;
        if rest.contains('/') {
            return Err(bad("no path allowed, just http://host:port"));
        }
        let with_port = if rest.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            rest.to_owned()
        } else {
            format!("{rest}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| bad(&e.to_string()))?
            .next()
            .ok_or_else(|| bad("resolves to no address"))?;
        let authority = HeaderValue::from_str(rest).map_err(|e| bad(&e.to_string()))?;
        Ok(Self { addr, authority, base_url })
    }

    /// The WebSocket URL for `path`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.base_url.trim_start_matches("http://"))
    }
}

/// One request, as a scenario describes it.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method.
    pub method: Method,
    /// Path and query, starting with `/`.
    pub path: String,
    /// `Authorization` header value, when the route needs one.
    pub auth: Option<HeaderValue>,
    /// `Idempotency-Key`, for orders.
    pub idempotency_key: Option<String>,
    /// A JSON body.
    pub body: Option<Bytes>,
    /// Which route this is, for per-route statistics (scenario-defined).
    pub route: u8,
}

impl Call {
    /// A GET of `path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            auth: None,
            idempotency_key: None,
            body: None,
            route: 0,
        }
    }

    /// A POST of a JSON `body` to `path`.
    pub fn post(path: impl Into<String>, body: Bytes) -> Self {
        Self { method: Method::POST, body: Some(body), ..Self::get(path) }
    }

    /// With a bearer token (already formatted as `Bearer …`).
    pub fn with_auth(mut self, auth: HeaderValue) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Tagged with a route number.
    pub fn with_route(mut self, route: u8) -> Self {
        self.route = route;
        self
    }
}

/// The parts of an answer the runner looks at.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The full body.
    pub body: Bytes,
}

/// Formats `Bearer <token>` as a header value.
pub fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {token}")).expect("a JWT is visible ASCII")
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    target: Arc<Target>,
}

impl Conn {
    /// Opens a connection, from `source` when given (to spread ephemeral ports over 127.0.0.x).
    pub async fn open(target: &Arc<Target>, source: Option<IpAddr>) -> Result<Self> {
        let addr = target.addr;
        let connect_err = |source| Error::Connect { addr, source };
        let socket =
            if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(connect_err)?;
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0)).map_err(connect_err)?;
        }
        let stream = socket.connect(addr).await.map_err(connect_err)?;
        stream.set_nodelay(true).map_err(connect_err)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self { sender, target: target.clone() })
    }

    /// Whether the server has not closed this connection.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends `call` and reads the whole answer.
    pub async fn send(&mut self, call: &Call) -> Result<Answer> {
        let mut builder = Request::builder()
            .method(call.method.clone())
            .uri(call.path.as_str())
            .header(HOST, self.target.authority.clone());
        if let Some(auth) = &call.auth {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        if let Some(key) = &call.idempotency_key {
            builder = builder.header("idempotency-key", key.as_str());
        }
        let body = match &call.body {
            Some(b) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Full::new(b.clone())
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder.body(body)?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer { status, body })
    }

    /// Sends `call` and parses a JSON answer, failing unless the status is `want`.
    pub async fn json<T: serde::de::DeserializeOwned>(
        &mut self,
        what: &str,
        call: &Call,
        want: u16,
    ) -> Result<T> {
        let answer = self.send(call).await?;
        if answer.status != want {
            let body = String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)]).into_owned();
            return Err(Error::Status { what: what.to_owned(), status: answer.status, body });
        }
        Ok(serde_json::from_slice(&answer.body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_parse_with_and_without_port() {
        let t = Target::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(t.addr.port(), 8080);
        assert_eq!(t.base_url, "http://127.0.0.1:8080");
        assert_eq!(t.ws_url("/v1/events"), "ws://127.0.0.1:8080/v1/events");
        assert_eq!(Target::parse("http://127.0.0.1").unwrap().addr.port(), 80);
        assert!(Target::parse("https://x:1").is_err());
        assert!(Target::parse("http://127.0.0.1:1/v1").is_err());
    }
}
