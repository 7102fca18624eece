//! A fake OpenTelemetry collector: an OTLP/HTTP endpoint on loopback that
//! accepts `POST /v1/traces` with JSON bodies (`content-type: application/json`),
//! answers `{}`, and keeps every span it received for tests to inspect. The one
//! collector of the exporter's unit tests and of the e2e test of the binaries.

use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One received span, flattened out of its resource and scope.
#[derive(Debug, Clone)]
pub struct CollectedSpan {
    /// The resource's `service.name`.
    pub service: String,
    /// The OTLP JSON span (`traceId`, `spanId`, `parentSpanId`, `name`, `kind`, `attributes`…).
    pub span: Value,
}

impl CollectedSpan {
    /// A string field of the span (`""` when absent).
    pub fn field(&self, name: &str) -> &str {
        self.span[name].as_str().unwrap_or_default()
    }

    /// The value of attribute `key` as OTLP JSON (`{"stringValue": …}`, `{"intValue": "…"}`…).
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        self.span["attributes"].as_array()?.iter().find(|a| a["key"] == key).map(|a| &a["value"])
    }
}

/// The running collector; stops when dropped.
pub struct FakeCollector {
    url: String,
    received: Arc<Mutex<Received>>,
    task: JoinHandle<()>,
}

/// What the collector accepted: every span, and how many each request carried.
#[derive(Default)]
struct Received {
    spans: Vec<CollectedSpan>,
    requests: Vec<usize>,
}

impl FakeCollector {
    /// Listens on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let received = Arc::new(Mutex::new(Received::default()));
        let kept = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(socket, &kept).await {
                        eprintln!("fake collector: {e:#}");
                    }
                });
            }
        });
        Ok(Self { url, received, task })
    }

    /// The base URL, the value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<CollectedSpan> {
        self.received.lock().map(|r| r.spans.clone()).unwrap_or_default()
    }

    /// The number of spans in each export request accepted so far, in arrival order.
    pub fn requests(&self) -> Vec<usize> {
        self.received.lock().map(|r| r.requests.clone()).unwrap_or_default()
    }
}

impl Drop for FakeCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers the requests of one keep-alive connection until the client closes it.
async fn serve(socket: TcpStream, kept: &Mutex<Received>) -> anyhow::Result<()> {
    let mut socket = BufReader::new(socket);
    loop {
        let mut request_line = String::new();
        if socket.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let (mut length, mut json) = (None, false);
        loop {
            let mut line = String::new();
            socket.read_line(&mut line).await?;
            let Some((name, value)) = line.trim_end().split_once(':') else { break };
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.trim().parse::<usize>()?);
            } else if name.eq_ignore_ascii_case("content-type") {
                json = value.trim() == "application/json";
            }
        }
        let mut body = vec![0; length.context("no content-length")?];
        socket.read_exact(&mut body).await?;
        let (status, answer) = if !request_line.starts_with("POST /v1/traces ") {
            ("404 Not Found", "{}")
        } else if !json {
            ("415 Unsupported Media Type", "{}")
        } else {
            let body: Value = serde_json::from_slice(&body)?;
            let received = flatten(&body).context("not an OTLP trace export")?;
            let mut kept = kept.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            kept.requests.push(received.len());
            kept.spans.extend(received);
            ("200 OK", "{}")
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        socket.get_mut().write_all(response.as_bytes()).await?;
        if status != "200 OK" {
            bail!("unexpected request: {}", request_line.trim_end());
        }
    }
}

/// The spans of an `ExportTraceServiceRequest` in OTLP JSON.
fn flatten(body: &Value) -> Option<Vec<CollectedSpan>> {
    let mut out = Vec::new();
    for resource_spans in body["resourceSpans"].as_array()? {
        let service = resource_spans["resource"]["attributes"]
            .as_array()
            .and_then(|attributes| attributes.iter().find(|a| a["key"] == "service.name"))
            .and_then(|a| a["value"]["stringValue"].as_str())
            .unwrap_or_default()
            .to_owned();
        for scope_spans in resource_spans["scopeSpans"].as_array()? {
            for span in scope_spans["spans"].as_array()? {
                out.push(CollectedSpan { service: service.clone(), span: span.clone() });
            }
        }
    }
    Some(out)
}
