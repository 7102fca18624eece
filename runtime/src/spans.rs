//! Finished spans for an OpenTelemetry collector, with the ids we already carry.
//!
//! The api and the worker describe each span they finish with a [`Span`] whose
//! ids are those of [`TraceContext`] (the `traceparent` on the wire), and hand it
//! to [`export`]. With the `otlp` cargo feature and `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, [`install`] starts the
//! OpenTelemetry SDK's batch span processor, whose background task sends them to
//! the collector in batches ([`otlp`]). Otherwise
//! nothing is installed and [`enabled`] is false; without the feature it is the
//! constant `false`, so the code that builds spans behind `if enabled()` is
//! compiled away.
//!
//! ```no_run
//! # async fn serve() {}
//! # async fn demo() {
//! use std::time::SystemTime;
//! use tps_runtime::spans::{self, Span, SpanKind};
//! use tps_contract::trace::TraceContext;
//!
//! let installed = spans::install("tps-api");
//! let start = spans::enabled().then(SystemTime::now);
//! let trace = TraceContext::root();
//! if let Some(start) = start {
//!     spans::export(Span {
//!         name: "POST /v1/orders",
//!         kind: SpanKind::Server,
//!         context: trace,
//!         parent_span_id: None,
//!         start,
//!         end: SystemTime::now(),
//!         attributes: vec![("http.response.status_code", 202u32.into())],
//!     });
//! }
//! serve().await;
//! installed.shutdown().await; // flushes what is queued
//! # }
//! ```

use std::borrow::Cow;
use std::time::SystemTime;

use tps_contract::trace::TraceContext;

#[cfg(feature = "otlp")]
pub mod otlp;

/// What a span stands for, as OTLP names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Handles a request from a remote caller (the api's `POST /v1/orders`).
    Server,
    /// Processes a message a producer queued (the worker's settle).
    Consumer,
    /// Work inside the process.
    Internal,
}

/// An attribute value: the OTLP types we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    /// A string.
    String(Cow<'static, str>),
    /// A signed integer (unsigned values above `i64::MAX` saturate).
    Int(i64),
    /// A boolean.
    Bool(bool),
}

impl From<&'static str> for AttributeValue {
    fn from(v: &'static str) -> Self {
        Self::String(Cow::Borrowed(v))
    }
}

impl From<String> for AttributeValue {
    fn from(v: String) -> Self {
        Self::String(Cow::Owned(v))
    }
}

impl From<bool> for AttributeValue {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl From<i64> for AttributeValue {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<u32> for AttributeValue {
    fn from(v: u32) -> Self {
        Self::Int(i64::from(v))
    }
}

impl From<u64> for AttributeValue {
    fn from(v: u64) -> Self {
        Self::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<usize> for AttributeValue {
    fn from(v: usize) -> Self {
        Self::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

/// One finished span. Its ids are ours: `context` is the span itself, and its
/// parent (always in another process: the caller, or the api for the worker) is
/// `parent_span_id` of the same trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// The span name, e.g. `POST /v1/orders` or `settle`.
    pub name: &'static str,
    /// Server, consumer or internal.
    pub kind: SpanKind,
    /// This span's trace id, span id and sampled flag. Spans whose flag is not
    /// sampled are not exported (the caller decided; we follow).
    pub context: TraceContext,
    /// The parent's span id (16 lowercase hex digits); `None` for a root span.
    pub parent_span_id: Option<String>,
    /// When the span began.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
    /// Its attributes.
    pub attributes: Vec<(&'static str, AttributeValue)>,
}

/// Whether spans are exported: the `otlp` feature is compiled in and [`install`]
/// found an endpoint. One atomic load with the feature; `false`, a constant,
/// without it.
#[inline(always)]
pub fn enabled() -> bool {
    #[cfg(feature = "otlp")]
    {
        otlp::enabled()
    }
    #[cfg(not(feature = "otlp"))]
    {
        false
    }
}

/// Queues a finished span for export, never waiting: when the queue is full the
/// span is dropped (the SDK warns at the first drop and logs the total at
/// shutdown). Does nothing unless [`enabled`].
#[inline]
pub fn export(span: Span) {
    #[cfg(feature = "otlp")]
    otlp::export(span);
    #[cfg(not(feature = "otlp"))]
    drop(span);
}

/// Starts the exporter when the `otlp` feature is compiled in and the standard
/// `OTEL_*` variables ask for one; `default_service_name` is the `service.name`
/// unless `OTEL_SERVICE_NAME` (or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`)
/// says otherwise. Call it once, inside the Tokio runtime, after logging is set
/// up (problems are logged, never fatal).
pub fn install(default_service_name: &str) -> Installed {
    #[cfg(feature = "otlp")]
    {
        Installed { active: otlp::install_from_env(default_service_name) }
    }
    #[cfg(not(feature = "otlp"))]
    {
        let _ = default_service_name;
        // Say why a configured collector receives nothing.
        for name in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] {
            if std::env::var_os(name).is_some_and(|v| !v.is_empty()) {
                tracing::warn!("{name} is set, but this build has no `otlp` feature: no spans are exported");
            }
        }
        Installed {}
    }
}

/// What [`install`] started; [`Installed::shutdown`] flushes it before exit.
#[derive(Debug)]
#[must_use = "call shutdown() before the process exits, or the queued spans are lost"]
pub struct Installed {
    #[cfg(feature = "otlp")]
    pub(crate) active: bool,
}

impl Installed {
    /// Exports every queued span (waiting at most a few seconds for the
    /// collector), then stops exporting. A no-op when nothing was installed.
    pub async fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if self.active {
            otlp::shutdown(otlp::FLUSH_TIMEOUT).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_attributes_saturate() {
        assert_eq!(AttributeValue::from(u64::MAX), AttributeValue::Int(i64::MAX));
        assert_eq!(AttributeValue::from(7u32), AttributeValue::Int(7));
        assert_eq!(AttributeValue::from("x"), AttributeValue::String(Cow::Borrowed("x")));
    }

    #[cfg(not(feature = "otlp"))]
    #[test]
    fn without_the_feature_nothing_is_enabled() {
        assert!(!enabled());
        let installed = install("tps-test");
        assert!(!enabled());
        drop(installed);
    }
}
