//! The `otlp` feature: [`crate::spans`] exported to an OpenTelemetry collector
//! over OTLP/HTTP with JSON bodies.
//!
//! Our spans already carry W3C ids, so each becomes an `opentelemetry_sdk`
//! `SpanData` with exactly those ids (no tracer, no id generator, no sampler)
//! and is handed to the SDK's batch span processor through
//! `SpanProcessor::on_end`, which batches them for `opentelemetry-otlp`'s HTTP
//! exporter on a hyper client (plain `http://`, as an in-cluster collector or
//! agent speaks).
//!
//! The processor is the one that runs on Tokio
//! (`span_processor_with_async_runtime::BatchSpanProcessor` with
//! `runtime::Tokio`): the hyper client needs a Tokio reactor, which the SDK's
//! default, thread-based processor does not give it (its thread calls the exporter
//! with a plain blocking executor, and the client panics there). `on_end` is a
//! `try_send` on the processor's bounded queue, so the network stays off the
//! request path; when the queue is full the span is dropped.
//!
//! Configuration is the OpenTelemetry SDK's environment (see [`Config::from_vars`]):
//! an exporter starts only when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is)
//! or `OTEL_EXPORTER_OTLP_ENDPOINT` (plus `/v1/traces`) is set, and not when
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER` excludes `otlp`.
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` make the resource;
//! `OTEL_EXPORTER_OTLP[_TRACES]_HEADERS` and `_TIMEOUT` are read by the exporter;
//! `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE`,
//! `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BSP_MAX_CONCURRENT_EXPORTS` and
//! `OTEL_BSP_EXPORT_TIMEOUT` become the processor's `BatchConfig`.
//!
//! Problems are reported by the SDK itself, as `tracing` warnings and errors with
//! target `opentelemetry_sdk` (its `internal-logs` feature), in the process log:
//! `BatchSpanProcessor.SpanDroppingStarted` at the first span dropped on a full
//! queue, `BatchSpanProcessor.Shutdown` with the total `dropped_spans` at shutdown,
//! and `BatchSpanProcessor.Export.Error` (or `.Flush.ExportError`) for each failed
//! request. `RUST_LOG=info,opentelemetry_sdk=off` silences them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::trace::{SpanContext, SpanId, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, Key, KeyValue, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{
    BatchConfig, BatchConfigBuilder, SpanData, SpanEvents, SpanExporter as _, SpanLinks, SpanProcessor as _,
};

use super::{AttributeValue, Span, SpanKind};

/// How long [`crate::spans::Installed::shutdown`] waits for the last export.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The longest the processor waits for one request (`OTEL_BSP_EXPORT_TIMEOUT`,
    /// 30 s); the exporter's own `OTEL_EXPORTER_OTLP_TIMEOUT` (10 s) applies too.
    pub export_timeout: Duration,
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
            export_timeout: Duration::from_millis(30_000),
        }
    }

    /// The process environment's configuration; `None` when it asks for no export.
    pub fn from_env(default_service_name: &str) -> Option<Self> {
        Self::from_vars(|name| std::env::var(name).ok(), default_service_name)
    }

    /// The configuration the OTel variables given by `var` describe, following the
    /// SDK specification: `None` unless an endpoint is set, or when
    /// `OTEL_SDK_DISABLED` is `true`, or `OTEL_TRACES_EXPORTER` does not list `otlp`.
    /// Empty values count as unset; unparsable numbers keep their defaults, and so
    /// do zero sizes and timeouts, which the SDK's processor cannot work with (a
    /// zero-sized queue panics, a zero-sized batch never fills); a zero delay is 1 ms.
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
        if let Some(ms) = number("OTEL_BSP_EXPORT_TIMEOUT").filter(|&ms| ms > 0) {
            config.export_timeout = Duration::from_millis(ms);
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

    /// The SDK processor's batching. Every value is set here, so the process
    /// environment that `BatchConfigBuilder::default()` also reads changes nothing.
    fn batch_config(&self) -> BatchConfig {
        BatchConfigBuilder::default()
            .with_scheduled_delay(self.schedule_delay.max(Duration::from_millis(1)))
            .with_max_queue_size(self.max_queue_size.max(1))
            .with_max_export_batch_size(self.max_export_batch_size.max(1))
            .with_max_concurrent_exports(self.max_concurrent_exports.max(1))
            .with_max_export_timeout(self.export_timeout)
            .build()
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

/// A running exporter: the SDK's batch span processor and its Tokio task.
pub(crate) struct Pipeline {
    processor: Arc<BatchSpanProcessor<Tokio>>,
    scope: InstrumentationScope,
    open: AtomicBool,
}

impl Pipeline {
    /// Builds the exporter and starts the processor's task on the current Tokio runtime.
    pub(crate) fn start(config: &Config) -> Result<Self, String> {
        // `runtime::Tokio` spawns the processor's task with `tokio::spawn`.
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
        let processor =
            BatchSpanProcessor::builder(exporter, Tokio).with_batch_config(config.batch_config()).build();
        Ok(Self {
            processor: Arc::new(processor),
            scope: InstrumentationScope::builder("tps").with_version(env!("CARGO_PKG_VERSION")).build(),
            open: AtomicBool::new(true),
        })
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Queues `span` without waiting: the processor's `on_end` is a `try_send`,
    /// and it drops the span when its queue is full.
    pub(crate) fn export(&self, span: Span) {
        if !self.is_open() || !span.context.sampled {
            return;
        }
        if let Some(data) = span_data(span, &self.scope) {
            self.processor.on_end(data);
        }
    }

    /// Stops taking spans, then has the processor export everything queued and
    /// waits for the collector's answers, at most `timeout`.
    pub(crate) async fn shutdown(&self, timeout: Duration) -> Result<(), String> {
        self.open.store(false, Ordering::Relaxed);
        // The SDK's shutdown blocks its thread until the processor's task, on this
        // runtime, has flushed: off the runtime's threads, so that task can run.
        let processor = self.processor.clone();
        let shutdown = tokio::task::spawn_blocking(move || processor.shutdown_with_timeout(timeout));
        match tokio::time::timeout(timeout, shutdown).await {
            Ok(Ok(result)) => result.map_err(|e| e.to_string()),
            Ok(Err(panicked)) => Err(panicked.to_string()),
            Err(_) => Err(format!("not done after {timeout:?}")),
        }
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
    if let Err(error) = pipeline.shutdown(timeout).await {
        tracing::warn!(?timeout, %error, "OTLP span export did not finish before shutdown; queued spans are lost");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::{Instant, SystemTime};

    use serde_json::Value as Json;
    use tokio::net::TcpListener;

    use super::*;
    use crate::spans;
    use tps_contract::trace::{TRACEPARENT_HEADER, TraceContext};

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
            ("OTEL_BSP_EXPORT_TIMEOUT", "0"),
        ];
        let config = Config::from_vars(vars(&tuned), "svc").unwrap();
        assert_eq!(config.schedule_delay, Duration::from_millis(250));
        assert_eq!(config.max_queue_size, 100);
        assert_eq!(config.max_export_batch_size, 100, "a batch never exceeds the queue");
        assert_eq!(config.max_concurrent_exports, 1, "unparsable: the default");
        assert_eq!(config.export_timeout, Duration::from_secs(30), "zero: the default");

        let zeros = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_BSP_SCHEDULE_DELAY", "0"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
            ("OTEL_BSP_MAX_CONCURRENT_EXPORTS", "4"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "2500"),
        ];
        let config = Config::from_vars(vars(&zeros), "svc").unwrap();
        assert_eq!(config.schedule_delay, Duration::from_millis(1), "the processor's timer needs a period");
        assert_eq!(config.max_queue_size, 2048, "the processor's queue needs room");
        assert_eq!(config.max_concurrent_exports, 4);
        assert_eq!(config.export_timeout, Duration::from_millis(2500));
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

    /// Polls `done` until it holds, for at most 10 s.
    async fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The SDK's processor does the batching: with `OTEL_BSP_MAX_EXPORT_BATCH_SIZE=2`
    /// five spans go out as two full requests at once, and the fifth, whose batch is
    /// due only in an hour, goes out alone with the shutdown flush. Every span once,
    /// with its own id.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_batches_go_out_at_once_and_shutdown_flushes_the_rest() {
        let collector = tps_testkit::FakeCollector::start().await.unwrap();
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url()),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2"),
            ("OTEL_BSP_SCHEDULE_DELAY", "3600000"),
        ];
        let config = Config::from_vars(vars(&env), "tps-test").unwrap();
        assert_eq!(config.max_export_batch_size, 2);
        let pipeline = Pipeline::start(&config).unwrap();
        let sent: Vec<Span> = (0..5).map(|_| spans_template()).collect();
        for span in &sent {
            pipeline.export(span.clone());
        }
        eventually("two full batches", || collector.spans().len() >= 4).await;
        assert_eq!(collector.requests(), [2, 2], "full batches only, before the delay");

        pipeline.shutdown(FLUSH_TIMEOUT).await.unwrap();
        assert_eq!(collector.requests(), [2, 2, 1], "the shutdown flushes the partial batch");
        let mut received: Vec<String> =
            collector.spans().iter().map(|c| c.field("spanId").to_owned()).collect();
        let mut expected: Vec<String> = sent.iter().map(|s| s.context.span_id.clone()).collect();
        received.sort();
        expected.sort();
        assert_eq!(received, expected);

        pipeline.export(spans_template());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(collector.requests(), [2, 2, 1], "nothing is exported after shutdown");
    }

    /// A partial batch goes out after `OTEL_BSP_SCHEDULE_DELAY`, without a flush.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_partial_batch_goes_out_after_the_schedule_delay() {
        let collector = tps_testkit::FakeCollector::start().await.unwrap();
        let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
        let pipeline = Pipeline::start(&Config::from_vars(vars(&env), "tps-test").unwrap()).unwrap();
        for _ in 0..3 {
            pipeline.export(spans_template());
        }
        eventually("the delayed batch", || collector.spans().len() == 3).await;
        assert!(collector.requests().iter().all(|&n| n < 512), "{:?}", collector.requests());
    }

    /// Records the names of the warnings and errors logged on its thread.
    #[derive(Clone, Default)]
    struct Warnings(Arc<std::sync::Mutex<Vec<String>>>);

    impl tracing::Subscriber for Warnings {
        fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
            *metadata.level() <= tracing::Level::WARN
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let metadata = event.metadata();
            self.0.lock().unwrap().push(format!("{}: {}", metadata.target(), metadata.name()));
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    /// A collector that accepts connections and never answers: exporting still
    /// returns at once, the processor's full queue drops spans and the SDK says
    /// so in the log, and the shutdown gives up after its timeout.
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
        let warnings = Warnings::default();
        let started = Instant::now();
        tracing::subscriber::with_default(warnings.clone(), || {
            for _ in 0..10_000 {
                pipeline.export(spans_template());
            }
        });
        assert!(started.elapsed() < Duration::from_secs(1), "export waited: {:?}", started.elapsed());
        let logged = warnings.0.lock().unwrap().clone();
        assert_eq!(
            logged,
            ["opentelemetry_sdk: BatchSpanProcessor.SpanDroppingStarted"],
            "how an operator sees drops"
        );

        let started = Instant::now();
        assert!(pipeline.shutdown(Duration::from_millis(300)).await.is_err(), "the flush cannot finish");
        assert!(started.elapsed() < Duration::from_secs(2), "shutdown waited: {:?}", started.elapsed());
    }
}
