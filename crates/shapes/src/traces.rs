//! Spans, trace search hits and the service catalog as the trace API shows them.

use serde::Serialize;
use serde_json::{Map, Value as Json_};

use crate::changes::ChangeJ;

/// One span of a trace: the caller's own in full, another team's redacted to where it sits
/// and how long it took (`detail` is `None`).
#[derive(Debug, Default, Serialize)]
pub struct SpanJ {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub service: String,
    pub start_time: String,
    pub end_time: String,
    /// Nanoseconds as text: JSON numbers lose precision past 2^53.
    pub start_time_unix_nanos: String,
    pub duration_ms: f64,
    pub status: StatusJ,
    #[serde(flatten)]
    pub detail: Option<SpanDetailJ>,
}

impl SpanJ {
    /// The span's own parts; empty for a redacted one.
    pub fn detail(&self) -> &SpanDetailJ {
        static NONE: std::sync::OnceLock<SpanDetailJ> = std::sync::OnceLock::new();
        self.detail.as_ref().unwrap_or_else(|| NONE.get_or_init(SpanDetailJ::default))
    }
}

#[derive(Debug, Default, Serialize)]
pub struct StatusJ {
    pub code: String,
    /// Only on the caller's own spans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What only the span's own team sees.
#[derive(Debug, Default, Serialize)]
pub struct SpanDetailJ {
    pub trace_state: String,
    pub flags: u32,
    pub name: String,
    pub operation: String,
    pub kind: String,
    pub environment: Option<String>,
    pub version: Option<String>,
    pub commit: Option<String>,
    pub repository: Option<String>,
    pub code: CodeJ,
    pub attributes: Map<String, Json_>,
    pub dropped_attributes_count: u32,
    pub events: Vec<EventJ>,
    pub dropped_events_count: u32,
    pub links: Vec<LinkJ>,
    pub dropped_links_count: u32,
    pub resource: ResourceJ,
    pub scope: ScopeJ,
    pub change: ChangeJ,
}

/// Where in the code the span runs, as its `code.*` attributes say.
#[derive(Debug, Default, Serialize)]
pub struct CodeJ {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_number: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stacktrace: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct EventJ {
    pub time: String,
    pub name: String,
    pub attributes: Map<String, Json_>,
    pub dropped_attributes_count: u32,
}

/// A span's link to a span of another (or the same) trace.
#[derive(Debug, Default, Serialize)]
pub struct LinkJ {
    pub trace_id: String,
    pub span_id: String,
    pub trace_state: String,
    pub flags: u32,
    pub attributes: Map<String, Json_>,
    pub dropped_attributes_count: u32,
}

#[derive(Debug, Default, Serialize)]
pub struct ResourceJ {
    pub attributes: Map<String, Json_>,
    pub dropped_attributes_count: u32,
    pub schema_url: String,
}

#[derive(Debug, Default, Serialize)]
pub struct ScopeJ {
    pub name: String,
    pub version: String,
    pub attributes: Map<String, Json_>,
    pub schema_url: String,
}

/// One trace found by a search: the spans that matched and, when known, the trace as a whole.
#[derive(Debug, Serialize)]
pub struct TraceHitJ {
    pub trace_id: String,
    pub newest_match_time: String,
    pub matched_spans: Vec<MatchedSpanJ>,
    #[serde(flatten)]
    pub whole: Option<WholeTraceJ>,
}

#[derive(Debug, Serialize)]
pub struct MatchedSpanJ {
    pub span_id: String,
    pub service: String,
    pub operation: String,
    pub name: String,
    pub start_time: String,
    pub duration_ms: f64,
    pub status: String,
}

/// A found trace's root, start, duration and counts.
#[derive(Debug, Serialize)]
pub struct WholeTraceJ {
    pub root: RootJ,
    pub start_time: String,
    pub duration_ms: f64,
    pub span_count: usize,
    pub service_count: usize,
    pub error_count: usize,
}

/// A trace's root span: another team's names its service only.
#[derive(Debug, Serialize)]
pub struct RootJ {
    pub service: String,
    /// Whether the root itself was stored (else the earliest span stands for it).
    pub found: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

/// A service in the catalog, with what the caller may see of it.
#[derive(Debug, Serialize)]
pub struct ServiceJ {
    pub name: String,
    pub environments: Vec<String>,
    pub operations: Vec<OperationJ>,
    pub versions: Vec<VersionJ>,
}

#[derive(Debug, Serialize)]
pub struct OperationJ {
    pub name: String,
    pub span_kind: String,
    pub first_seen: String,
    pub last_seen: String,
    pub span_count: u64,
}

#[derive(Debug, Serialize)]
pub struct VersionJ {
    pub version: Option<String>,
    pub environment: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub span_count: u64,
}
