//! A span as spanblame stores it: the OTLP span's content (ids, timing, attributes, events,
//! links, status) with its resource and instrumentation scope, plus the version identity
//! derived from them at ingest.

use std::sync::Arc;

use crate::{SpanId, TraceId, VersionIdentity};

/// An attribute value: OTLP's `AnyValue`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    KvList(Vec<KeyValue>),
    /// An `AnyValue` with no value set; OTLP allows it and so do we.
    Empty,
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as text, for matching identity attributes and search filters:
    /// strings as they are, integers, doubles and booleans in their usual form.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Value::String(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Double(d) => Some(d.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    pub key: String,
    pub value: Value,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: Value) -> KeyValue {
        KeyValue { key: key.into(), value }
    }
}

/// Finds the first attribute called `key`.
pub(crate) fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes.iter().find(|kv| kv.key == key).map(|kv| &kv.value)
}

/// The entity that produced spans: OTLP's `Resource` plus the `schema_url` of its `ResourceSpans`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resource {
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
    pub schema_url: String,
}

/// The instrumentation scope (library) that recorded spans, plus its `ScopeSpans.schema_url`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scope {
    pub name: String,
    pub version: String,
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
    pub schema_url: String,
}

/// OTLP span kinds, with their OTLP numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpanKind {
    Unspecified = 0,
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

impl SpanKind {
    /// Maps the OTLP number; unknown numbers become `Unspecified`, as the spec asks receivers to do.
    pub fn from_otlp(kind: i32) -> SpanKind {
        match kind {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCode {
    Unset = 0,
    Ok = 1,
    Error = 2,
}

impl StatusCode {
    pub fn from_otlp(code: i32) -> StatusCode {
        match code {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
        }
    }

    pub fn parse(text: &str) -> Option<StatusCode> {
        match text {
            "unset" => Some(StatusCode::Unset),
            "ok" => Some(StatusCode::Ok),
            "error" => Some(StatusCode::Error),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub code: StatusCode,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub time_unix_nanos: u64,
    pub name: String,
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub trace_state: String,
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
    pub flags: u32,
}

/// One span. `resource` and `scope` are shared by all spans of one OTLP `ScopeSpans`.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub trace_state: String,
    pub flags: u32,
    pub name: String,
    pub kind: SpanKind,
    pub start_time_unix_nanos: u64,
    pub end_time_unix_nanos: u64,
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
    pub events: Vec<Event>,
    pub dropped_events_count: u32,
    pub links: Vec<Link>,
    pub dropped_links_count: u32,
    pub status: Status,
    pub resource: Arc<Resource>,
    pub scope: Arc<Scope>,
}

impl Span {
    pub fn duration_nanos(&self) -> u64 {
        self.end_time_unix_nanos.saturating_sub(self.start_time_unix_nanos)
    }

    /// The span's attribute `key`, else its resource's.
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        find(&self.attributes, key).or_else(|| find(&self.resource.attributes, key))
    }

    /// The operation spanblame groups latency by: `http.route` where the instrumentation set it
    /// (a template such as `/cart/{id}`, never a raw URL), else the span name.
    pub fn operation(&self) -> &str {
        match find(&self.attributes, "http.route") {
            Some(Value::String(route)) if !route.is_empty() => route,
            _ => &self.name,
        }
    }

    pub fn is_error(&self) -> bool {
        self.status.code == StatusCode::Error
    }

    /// What kind of error a failed span records: the `exception.type` of its first `exception`
    /// event, else its status message; `None` when it names neither (or did not fail).
    pub fn error_type(&self) -> Option<&str> {
        if !self.is_error() {
            return None;
        }
        let exception =
            self.events.iter().filter(|e| e.name == "exception").find_map(|e| {
                match find(&e.attributes, "exception.type") {
                    Some(Value::String(kind)) if !kind.is_empty() => Some(kind.as_str()),
                    _ => None,
                }
            });
        exception.or_else(|| Some(self.status.message.as_str()).filter(|m| !m.is_empty()))
    }

    /// Service, environment, version, commit, repository and code location, read from the
    /// attribute conventions (newest names first).
    pub fn identity(&self) -> VersionIdentity {
        VersionIdentity::of(self)
    }

    /// How many spans this one stands for when it was sampled: from the OpenTelemetry
    /// sampling threshold in its trace state (`ot=th:…`: 2^56 / (2^56 − T)), else the
    /// attribute `sampling.adjusted_count` or Honeycomb's `SampleRate`, else 1. Rounded to a
    /// whole count, at least 1 and at most [`MAX_ADJUSTED_COUNT`].
    pub fn adjusted_count(&self) -> u64 {
        let from_threshold = threshold_adjusted_count(&self.trace_state);
        let from_attribute = || {
            ["sampling.adjusted_count", "SampleRate"].iter().find_map(|key| {
                match self.attribute(key)? {
                    Value::Int(n) => Some(*n as f64),
                    Value::Double(x) => Some(*x),
                    Value::String(text) => text.trim().parse().ok(),
                    _ => None,
                }
            })
        };
        let count = from_threshold.or_else(from_attribute).unwrap_or(1.0);
        if count.is_finite() { (count.round() as u64).clamp(1, MAX_ADJUSTED_COUNT) } else { 1 }
    }
}

/// The largest adjusted count a span may carry (a 1-in-a-million sample).
pub(crate) const MAX_ADJUSTED_COUNT: u64 = 1_000_000;

/// The adjusted count of the `th` threshold in a W3C trace state's `ot` member (OpenTelemetry
/// probability sampling: 1 to 14 hex digits, the 56-bit rejection threshold with trailing
/// zeros dropped); `None` when there is none or it is malformed.
fn threshold_adjusted_count(trace_state: &str) -> Option<f64> {
    let ot = trace_state.split(',').find_map(|member| member.trim().strip_prefix("ot="))?;
    let th = ot.split(';').find_map(|field| field.strip_prefix("th:"))?;
    if th.is_empty() || th.len() > 14 || !th.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let threshold = u64::from_str_radix(th, 16).ok()? << (4 * (14 - th.len()));
    let range = 1u64 << 56;
    Some(range as f64 / (range - threshold) as f64)
}
