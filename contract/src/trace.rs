//! W3C trace context (`traceparent`) carried from the api's request through the
//! NATS message headers into the worker's settle, so one order can be followed
//! end to end in the logs (and in any tracer that reads the same header).
//!
//! Only the header format lives here, with no tracing SDK: the hot path pays for
//! a few random bytes and one header, nothing more.

/// The header name, in HTTP requests and responses and on NATS messages.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// One span's place in a trace: `00-<trace-id>-<parent-id>-<flags>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits, shared by every span of the trace.
    pub trace_id: String,
    /// 16 lowercase hex digits naming this span.
    pub span_id: String,
    /// The sampled flag of the caller (we keep it; we never decide sampling).
    pub sampled: bool,
}

impl TraceContext {
    /// A new trace, for a request that came without one.
    pub fn root() -> Self {
        Self { trace_id: random_hex(16), span_id: random_hex(8), sampled: true }
    }

    /// A span of the same trace, whose parent is `self`.
    pub fn child(&self) -> Self {
        Self { trace_id: self.trace_id.clone(), span_id: random_hex(8), sampled: self.sampled }
    }

    /// Parses a `traceparent` value; `None` for anything the spec says to ignore.
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        // Version 00 has exactly four fields; a future version may append more.
        let version_ok = is_hex(version, 2) && version != "ff" && (version != "00" || parts.next().is_none());
        let ids_ok = is_hex(trace_id, 32) && is_hex(span_id, 16) && !is_zero(trace_id) && !is_zero(span_id);
        if !(version_ok && ids_ok && is_hex(flags, 2)) {
            return None;
        }
        let sampled = u8::from_str_radix(flags, 16).ok()? & 1 == 1;
        Some(Self { trace_id: trace_id.to_owned(), span_id: span_id.to_owned(), sampled })
    }

    /// The `traceparent` value.
    pub fn header(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, u8::from(self.sampled))
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_zero(s: &str) -> bool {
    s.bytes().all(|b| b == b'0')
}

/// `n` random bytes as hex; UUID v4 is our source of randomness already.
fn random_hex(n: usize) -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..n].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_the_trace_in_children() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parent = TraceContext::parse(header).unwrap();
        assert_eq!(parent.header(), header);
        let child = parent.child();
        assert_eq!(child.trace_id, parent.trace_id);
        assert_ne!(child.span_id, parent.span_id);
        assert_eq!(TraceContext::parse(&child.header()), Some(child));
    }

    #[test]
    fn refuses_what_the_spec_says_to_ignore() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
        let root = TraceContext::root();
        assert_eq!(TraceContext::parse(&root.header()), Some(root));
    }
}
