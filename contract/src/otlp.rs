//! The `otlp` feature: [`crate::spans`] exported to an OpenTelemetry collector
//! over OTLP/HTTP with JSON bodies.
//!
//! Our spans already carry W3C ids, so each becomes an `opentelemetry_sdk`
//! `SpanData` with exactly those ids (no tracer, no id generator, no sampler)
//! and goes to `opentelemetry-otlp`'s HTTP exporter on a hyper client (plain
//! `http://`, as an in-cluster collector or agent speaks). A bounded queue keeps
//! the network off the request path: [`export`] is a `try_send`, and a Tokio
//! task batches, converts and posts, dropping (and counting) spans when the
//! collector cannot keep up.
//!
//! Configuration is the OpenTelemetry SDK's environment (see [`Config::from_vars`]):
//! an exporter starts only when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is)
//! or `OTEL_EXPORTER_OTLP_ENDPOINT` (plus `/v1/traces`) is set, and not when
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER` excludes `otlp`.
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` make the resource;
//! `OTEL_EXPORTER_OTLP[_TRACES]_HEADERS` and `_TIMEOUT` are read by the exporter;
//! `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE`,
//! `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` and `OTEL_BSP_MAX_CONCURRENT_EXPORTS` shape
//! the batches as they do for the SDK's batch span processor.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanContext, SpanId, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, Key, KeyValue, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::spans::{AttributeValue, Span, SpanKind};

/// How long [`crate::spans::Installed::shutdown`] waits for the last export.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Export problems (failures, drops) are logged at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(10);

const SERVICE_NAME: &str = "service.name";

/// Where and how spans are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The full URL the batches are POSTed to, e.g. `http://collector:4318/v1/traces`.
    pub endpoint: String,
    /// `service.name` when the environment names none.
    pub default_service_name: String,
    /// The longest a span waits in a partial batch (`OTEL_BSP_SCHEDULE_DELAY`, 5 s).
    pub schedule_delay: Duration,
    /// Spans queued before new ones are dropped (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048).
    pub max_queue_size: usize,
    /// Spans per request, at most (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, 512).
    pub max_export_batch_size: usize,
    /// Requests in flight at once (`OTEL_BSP_MAX_CONCURRENT_EXPORTS`, 1).
    pub max_concurrent_exports: usize,
}

impl Config {
    /// Defaults for exporting to `endpoint` (a full URL, `/v1/traces` included).
    pub fn new(endpoint: impl Into<String>, default_service_name: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            default_service_name: default_service_name.into(),
            schedule_delay: Duration::from_millis(5000),
            max_queue_size: 2048,
            max_export_batch_size: 512,
            max_concurrent_exports: 1,
        }
    }

    /// The process environment's configuration; `None` when it asks for no export.
    pub fn from_env(default_service_name: &str) -> Option<Self> {
        Self::from_vars(|name| std::env::var(name).ok(), default_service_name)
    }

    /// The configuration the OTel variables given by `var` describe, following the
    /// SDK specification: `None` unless an endpoint is set, or when
    /// `OTEL_SDK_DISABLED` is `true`, or `OTEL_TRACES_EXPORTER` does not list `otlp`.
    /// Empty values count as unset; unparsable numbers keep their defaults.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>, default_service_name: &str) -> Option<Self> {
        let var = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return None;
        }
        if var("OTEL_TRACES_EXPORTER").is_some_and(|v| !v.split(',').any(|e| e.trim() == "otlp")) {
            return None;
        }
        let endpoint = match var(opentelemetry_otlp::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) {
            Some(url) => url,
            None => {
                format!(
                    "{}/v1/traces",
                    var(opentelemetry_otlp::OTEL_EXPORTER_OTLP_ENDPOINT)?.trim_end_matches('/')
                )
            }
        };
        let mut config = Self::new(endpoint, default_service_name);
        let number = |name: &str| var(name).and_then(|v| v.parse::<u64>().ok());
        if let Some(ms) = number("OTEL_BSP_SCHEDULE_DELAY") {
            config.schedule_delay = Duration::from_millis(ms.max(1));
        }
        let size = |name: &str, default: usize| {
            number(name).and_then(|n| usize::try_from(n).ok()).filter(|&n| n > 0).unwrap_or(default)
        };
        config.max_queue_size = size("OTEL_BSP_MAX_QUEUE_SIZE", config.max_queue_size);
        config.max_export_batch_size =
            size("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", config.max_export_batch_size).min(config.max_queue_size);
        config.max_concurrent_exports =
            size("OTEL_BSP_MAX_CONCURRENT_EXPORTS", config.max_concurrent_exports);
        Some(config)
    }
}

/// The resource of every span: the SDK's detectors (`OTEL_SERVICE_NAME`,
/// `OTEL_RESOURCE_ATTRIBUTES`, the SDK's own attributes), with our default
/// `service.name` where they found none.
fn resource(default_service_name: &str) -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&Key::from_static_str(SERVICE_NAME))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    if named {
        detected
    } else {
        Resource::builder().with_service_name(default_service_name.to_owned()).build()
    }
}

enum Command {
    Span(Span),
    Flush(oneshot::Sender<()>),
}

/// A running exporter: the queue's sending end and its background task.
pub(crate) struct Pipeline {
    queue: mpsc::Sender<Command>,
    dropped: Arc<AtomicU64>,
    open: AtomicBool,
}

impl Pipeline {
    /// Builds the exporter and spawns its task on the current Tokio runtime.
    pub(crate) fn start(config: &Config) -> Result<Self, String> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| "not inside a Tokio runtime".to_owned())?;
        if config.endpoint.starts_with("https:") {
            return Err("https endpoints are not supported (this build has no TLS client); \
                        export over http to a collector or agent"
                .to_owned());
        }
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(config.endpoint.clone())
            .build()
            .map_err(|e| e.to_string())?;
        exporter.set_resource(&resource(&config.default_service_name));
        let (queue, receiver) = mpsc::channel(config.max_queue_size.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let batcher = Batcher {
            exporter: Arc::new(exporter),
            scope: InstrumentationScope::builder("tps").with_version(env!("CARGO_PKG_VERSION")).build(),
            batch: Vec::with_capacity(config.max_export_batch_size),
            max_batch: config.max_export_batch_size.max(1),
            max_in_flight: config.max_concurrent_exports.max(1),
            in_flight: JoinSet::new(),
            dropped: dropped.clone(),
            problems: Problems::default(),
        };
        runtime.spawn(batcher.run(receiver, config.schedule_delay));
        Ok(Self { queue, dropped, open: AtomicBool::new(true) })
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Queues `span` without waiting; drops it when the queue is full.
    pub(crate) fn export(&self, span: Span) {
        if !self.is_open() || !span.context.sampled {
            return;
        }
        if self.queue.try_send(Command::Span(span)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Exports everything queued so far and waits for the collector's answers,
    /// at most `timeout`; false when that was not enough.
    pub(crate) async fn flush(&self, timeout: Duration) -> bool {
        let (done, flushed) = oneshot::channel();
        let flush = async { self.queue.send(Command::Flush(done)).await.is_ok() && flushed.await.is_ok() };
        tokio::time::timeout(timeout, flush).await.unwrap_or(false)
    }
}

/// The background task's state.
struct Batcher {
    exporter: Arc<opentelemetry_otlp::SpanExporter>,
    scope: InstrumentationScope,
    batch: Vec<SpanData>,
    max_batch: usize,
    max_in_flight: usize,
    in_flight: JoinSet<(usize, Result<(), String>)>,
    dropped: Arc<AtomicU64>,
    problems: Problems,
}

impl Batcher {
    async fn run(mut self, mut queue: mpsc::Receiver<Command>, delay: Duration) {
        // The first tick one delay from now (an interval's first tick is immediate).
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + delay, delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = queue.recv() => match command {
                    Some(Command::Span(span)) => {
                        self.batch.extend(span_data(span, &self.scope));
                        if self.batch.len() >= self.max_batch {
                            self.send().await;
                        }
                    }
                    Some(Command::Flush(done)) => {
                        self.drain().await;
                        let _ = done.send(());
                    }
                    None => {
                        self.drain().await;
                        return;
                    }
                },
                _ = tick.tick() => {
                    if !self.batch.is_empty() {
                        self.send().await;
                    }
                    self.report(false);
                }
                Some(done) = self.in_flight.join_next(), if !self.in_flight.is_empty() => self.finished(done),
            }
        }
    }

    /// Starts exporting the current batch, first waiting for a free slot.
    async fn send(&mut self) {
        while self.in_flight.len() >= self.max_in_flight {
            match self.in_flight.join_next().await {
                Some(done) => self.finished(done),
                None => break,
            }
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(self.max_batch));
        let exporter = self.exporter.clone();
        self.in_flight.spawn(async move {
            let spans = batch.len();
            (spans, exporter.export(batch).await.map_err(|e| e.to_string()))
        });
    }

    /// Exports the partial batch and waits for every request in flight.
    async fn drain(&mut self) {
        if !self.batch.is_empty() {
            self.send().await;
        }
        while let Some(done) = self.in_flight.join_next().await {
            self.finished(done);
        }
        self.report(true);
    }

    fn finished(&mut self, done: Result<(usize, Result<(), String>), tokio::task::JoinError>) {
        match done {
            Ok((_, Ok(()))) => {}
            Ok((spans, Err(error))) => self.problems.failed(spans as u64, error),
            Err(e) => self.problems.failed(0, e.to_string()),
        }
    }

    fn report(&mut self, now: bool) {
        self.problems.dropped += self.dropped.swap(0, Ordering::Relaxed);
        self.problems.log_if_due(now);
    }
}

/// Export failures and drops, logged together at most every [`REPORT_EVERY`].
#[derive(Default)]
struct Problems {
    failed_spans: u64,
    failures: u64,
    last_error: String,
    dropped: u64,
    last_report: Option<Instant>,
}

impl Problems {
    fn failed(&mut self, spans: u64, error: String) {
        self.failures += 1;
        self.failed_spans += spans;
        self.last_error = error;
    }

    fn log_if_due(&mut self, now: bool) {
        if self.failures == 0 && self.dropped == 0 {
            return;
        }
        if !now && self.last_report.is_some_and(|at| at.elapsed() < REPORT_EVERY) {
            return;
        }
        tracing::warn!(
            failed_requests = self.failures,
            failed_spans = self.failed_spans,
            queue_full_drops = self.dropped,
            last_error = %self.last_error,
            "OTLP span export lost spans"
        );
        *self = Self { last_report: Some(Instant::now()), ..Self::default() };
    }
}

/// Our span as the SDK's, with our ids; `None` if an id is not W3C hex.
fn span_data(span: Span, scope: &InstrumentationScope) -> Option<SpanData> {
    let trace_id = TraceId::from_hex(&span.context.trace_id).ok()?;
    let span_id = SpanId::from_hex(&span.context.span_id).ok()?;
    let parent_span_id = match span.parent_span_id.as_deref() {
        Some(parent) => SpanId::from_hex(parent).ok()?,
        None => SpanId::INVALID,
    };
    let flags = if span.context.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
    Some(SpanData {
        span_context: SpanContext::new(trace_id, span_id, flags, false, TraceState::default()),
        parent_span_id,
        // Our parents always live in another process: the caller, or the api.
        parent_span_is_remote: parent_span_id != SpanId::INVALID,
        span_kind: match span.kind {
            SpanKind::Server => opentelemetry::trace::SpanKind::Server,
            SpanKind::Consumer => opentelemetry::trace::SpanKind::Consumer,
            SpanKind::Internal => opentelemetry::trace::SpanKind::Internal,
        },
        name: span.name.into(),
        start_time: span.start,
        end_time: span.end.max(span.start),
        attributes: span
            .attributes
            .into_iter()
            .map(|(key, value)| {
                let value = match value {
                    AttributeValue::String(s) => Value::from(s),
                    AttributeValue::Int(i) => Value::I64(i),
                    AttributeValue::Bool(b) => Value::Bool(b),
                };
                KeyValue::new(key, value)
            })
            .collect(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope.clone(),
    })
}

static PIPELINE: OnceLock<Pipeline> = OnceLock::new();

/// Whether the process-wide exporter is running.
#[inline]
pub(crate) fn enabled() -> bool {
    PIPELINE.get().is_some_and(Pipeline::is_open)
}

/// Queues `span` on the process-wide exporter, if any.
pub(crate) fn export(span: Span) {
    if let Some(pipeline) = PIPELINE.get() {
        pipeline.export(span);
    }
}

/// Starts the process-wide exporter that `config` describes; false (and a
/// warning) when it cannot, or when one is already running.
pub fn install(config: &Config) -> bool {
    if PIPELINE.get().is_some() {
        tracing::warn!("an OTLP span exporter is already installed; keeping it");
        return false;
    }
    match Pipeline::start(config) {
        Ok(pipeline) => {
            if PIPELINE.set(pipeline).is_err() {
                return false;
            }
            tracing::info!(endpoint = %config.endpoint, "exporting spans over OTLP/HTTP (JSON)");
            true
        }
        Err(error) => {
            tracing::warn!(endpoint = %config.endpoint, %error, "no OTLP span export");
            false
        }
    }
}

/// [`install`] with the process environment's configuration, if it asks for one.
pub(crate) fn install_from_env(default_service_name: &str) -> bool {
    let Some(config) = Config::from_env(default_service_name) else { return false };
    for name in [
        opentelemetry_otlp::OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
        opentelemetry_otlp::OTEL_EXPORTER_OTLP_PROTOCOL,
    ] {
        if let Ok(protocol) = std::env::var(name)
            && !protocol.is_empty()
            && protocol != opentelemetry_otlp::OTEL_EXPORTER_OTLP_PROTOCOL_HTTP_JSON
        {
            tracing::warn!(%protocol, "{name} is ignored: this build exports http/json only");
        }
    }
    install(&config)
}

/// Flushes the process-wide exporter (at most `timeout`) and stops it.
pub(crate) async fn shutdown(timeout: Duration) {
    let Some(pipeline) = PIPELINE.get() else { return };
    pipeline.open.store(false, Ordering::Relaxed);
    if !pipeline.flush(timeout).await {
        tracing::warn!(?timeout, "OTLP span export did not finish before shutdown; queued spans are lost");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::SystemTime;

    use serde_json::Value as Json;
    use tokio::net::TcpListener;

    use super::*;
    use crate::spans;
    use crate::trace::{TRACEPARENT_HEADER, TraceContext};

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn the_environment_decides_whether_and_where_to_export() {
        assert_eq!(Config::from_vars(vars(&[]), "svc"), None, "no endpoint, no export");
        assert_eq!(Config::from_vars(vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]), "svc"), None);

        let generic =
            Config::from_vars(vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]), "svc");
        assert_eq!(generic, Some(Config::new("http://collector:4318/v1/traces", "svc")));

        let both = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:9999/custom"),
        ];
        let config = Config::from_vars(vars(&both), "svc").unwrap();
        assert_eq!(config.endpoint, "http://traces:9999/custom", "the signal's endpoint is used as is");

        for off in [
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
        ] {
            let set = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"), off];
            assert_eq!(Config::from_vars(vars(&set), "svc"), None, "{off:?}");
        }
        let listed =
            [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_TRACES_EXPORTER", "console, otlp")];
        assert!(Config::from_vars(vars(&listed), "svc").is_some());

        let tuned = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_BSP_SCHEDULE_DELAY", "250"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "500"),
            ("OTEL_BSP_MAX_CONCURRENT_EXPORTS", "nope"),
        ];
        let config = Config::from_vars(vars(&tuned), "svc").unwrap();
        assert_eq!(config.schedule_delay, Duration::from_millis(250));
        assert_eq!(config.max_queue_size, 100);
        assert_eq!(config.max_export_batch_size, 100, "a batch never exceeds the queue");
        assert_eq!(config.max_concurrent_exports, 1, "unparsable: the default");
    }

    #[test]
    fn spans_keep_our_ids() {
        let parent = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let child = parent.child();
        let now = SystemTime::now();
        let scope = InstrumentationScope::builder("t").build();
        let span = Span {
            name: "settle",
            kind: SpanKind::Consumer,
            context: child.clone(),
            parent_span_id: Some(parent.span_id.clone()),
            start: now,
            end: now,
            attributes: vec![("tps.shard", 3u32.into())],
        };
        let data = span_data(span.clone(), &scope).unwrap();
        assert_eq!(format!("{:032x}", data.span_context.trace_id()), child.trace_id);
        assert_eq!(format!("{:016x}", data.span_context.span_id()), child.span_id);
        assert_eq!(format!("{:016x}", data.parent_span_id), parent.span_id);
        assert!(data.parent_span_is_remote);
        assert_eq!(data.span_kind, opentelemetry::trace::SpanKind::Consumer);
        assert_eq!(data.attributes, vec![KeyValue::new("tps.shard", 3i64)]);

        let root = span_data(Span { parent_span_id: None, ..span.clone() }, &scope).unwrap();
        assert_eq!(root.parent_span_id, SpanId::INVALID);
        assert!(span_data(Span { parent_span_id: Some("xyz".into()), ..span }, &scope).is_none());
    }

    fn attribute<'a>(span: &'a Json, key: &str) -> &'a Json {
        let attributes = span["attributes"].as_array().unwrap();
        &attributes.iter().find(|a| a["key"] == key).unwrap_or_else(|| panic!("no {key} in {span}"))["value"]
    }

    /// The api's span and the worker's, made exactly as the two binaries make them
    /// (the caller's traceparent, `child()`, the header on the message, `child()`
    /// again), go through the process-wide exporter to a collector, are flushed
    /// on shutdown, and arrive as one trace: same trace id, the worker's parent is
    /// the api's span, the api's parent is the caller's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_api_and_worker_spans_reach_the_collector_as_one_trace() {
        let collector = tps_testkit::FakeCollector::start().await.unwrap();
        let mut config = Config::new(format!("{}/v1/traces", collector.url()), "tps-test");
        config.schedule_delay = Duration::from_secs(3600); // only the shutdown flush sends
        assert!(!spans::enabled());
        assert!(install(&config));
        let installed = spans::Installed { active: true };
        assert!(spans::enabled());

        // The api: the caller's traceparent -> our span, echoed and put on the message.
        let incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let caller = TraceContext::parse(incoming).unwrap();
        let api = caller.child();
        let started = SystemTime::now();
        spans::export(Span {
            name: "POST /v1/orders",
            kind: SpanKind::Server,
            context: api.clone(),
            parent_span_id: Some(caller.span_id.clone()),
            start: started,
            end: SystemTime::now(),
            attributes: vec![("http.response.status_code", 202u32.into())],
        });
        // The worker: the message's header -> its settle span.
        let on_message: HashMap<&str, String> = HashMap::from([(TRACEPARENT_HEADER, api.header())]);
        let parent = TraceContext::parse(&on_message[TRACEPARENT_HEADER]).unwrap();
        let settle = parent.child();
        spans::export(Span {
            name: "settle",
            kind: SpanKind::Consumer,
            context: settle.clone(),
            parent_span_id: Some(parent.span_id.clone()),
            start: started,
            end: SystemTime::now(),
            attributes: vec![("tps.stream", "ORDERS".into()), ("tps.seq", 42u64.into())],
        });
        // Not sampled by the caller: not exported.
        let unsampled =
            TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00").unwrap();
        spans::export(Span {
            name: "ignored",
            context: unsampled.child(),
            parent_span_id: None,
            ..spans_template()
        });

        assert!(collector.spans().is_empty(), "nothing is sent before the batch is due");
        installed.shutdown().await;
        assert!(!spans::enabled(), "stopped after shutdown");

        // The collector keeps only JSON posted to /v1/traces (content-type included).
        let collected = collector.spans();
        assert_eq!(collected.len(), 2, "{collected:?}");
        let find = |name: &str| {
            let found =
                collected.iter().find(|c| c.span["name"] == name).unwrap_or_else(|| panic!("no {name}"));
            (found.service.as_str(), &found.span)
        };
        let (api_service, api_span) = find("POST /v1/orders");
        let (worker_service, worker_span) = find("settle");
        assert_eq!(api_service, "tps-test");
        assert_eq!(worker_service, "tps-test");
        assert_eq!(api_span["traceId"], caller.trace_id.as_str());
        assert_eq!(api_span["spanId"], api.span_id.as_str());
        assert_eq!(api_span["parentSpanId"], caller.span_id.as_str());
        assert_eq!(api_span["kind"], 2, "server");
        assert_eq!(attribute(api_span, "http.response.status_code")["intValue"], "202");
        assert_eq!(worker_span["traceId"], caller.trace_id.as_str());
        assert_eq!(worker_span["spanId"], settle.span_id.as_str());
        assert_eq!(worker_span["parentSpanId"], api_span["spanId"], "the worker's parent is the api's span");
        assert_eq!(worker_span["kind"], 5, "consumer");
        assert_eq!(attribute(worker_span, "tps.stream")["stringValue"], "ORDERS");
        assert_eq!(attribute(worker_span, "tps.seq")["intValue"], "42");
    }

    fn spans_template() -> Span {
        let now = SystemTime::now();
        Span {
            name: "template",
            kind: SpanKind::Internal,
            context: TraceContext::root(),
            parent_span_id: None,
            start: now,
            end: now,
            attributes: Vec::new(),
        }
    }

    /// A collector that accepts connections and never answers: exporting still
    /// returns at once, the queue overflows into counted drops, and a flush gives
    /// up after its timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_collector_never_blocks_the_caller() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let _hold = tokio::spawn(async move {
            let mut open = Vec::new();
            loop {
                open.push(listener.accept().await.unwrap().0);
            }
        });
        let mut config = Config::new(url, "tps-test");
        config.max_queue_size = 8;
        config.max_export_batch_size = 4;
        let pipeline = Pipeline::start(&config).unwrap();
        let started = Instant::now();
        for _ in 0..10_000 {
            pipeline.export(spans_template());
        }
        assert!(started.elapsed() < Duration::from_secs(1), "export waited: {:?}", started.elapsed());
        assert!(pipeline.dropped.load(Ordering::Relaxed) > 9_000);
        assert!(!pipeline.flush(Duration::from_millis(300)).await, "the flush cannot finish");
    }
}
