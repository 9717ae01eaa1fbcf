//! Trace search filters and their evaluation on one span.

use model::{Span, StatusCode, TraceId};

/// A span-level search: a trace matches when any of its spans matches every filter.
#[derive(Debug, Clone, Default)]
pub struct SpanQuery {
    pub service: Option<String>,
    pub operation: Option<String>,
    pub environment: Option<String>,
    pub version: Option<String>,
    pub min_duration_nanos: Option<u64>,
    pub max_duration_nanos: Option<u64>,
    pub status: Option<StatusCode>,
    /// Attribute equality: the span's (or its resource's) attribute, as text, equals the value.
    pub attributes: Vec<(String, String)>,
    /// Span start time range, inclusive start, exclusive end.
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// Most traces to return.
    pub limit: usize,
    /// The caller's reach: only spans of these services (`None`: all). Spans outside it
    /// never match, so results and counts reveal nothing about them.
    pub allowed_services: Option<Vec<String>>,
    /// The caller's reach: only spans of these environments (`None`: all).
    pub allowed_environments: Option<Vec<String>>,
}

/// A trace found by a search, with the spans that matched, newest first.
#[derive(Debug, Clone)]
pub struct TraceMatch {
    pub trace_id: TraceId,
    pub spans: Vec<Span>,
}

impl TraceMatch {
    /// Start of its newest matching span; traces are ordered by it.
    pub fn newest_start_unix_nanos(&self) -> u64 {
        self.spans.iter().map(|s| s.start_time_unix_nanos).max().unwrap_or(0)
    }
}

impl SpanQuery {
    pub(crate) fn overlaps(&self, min_start_unix_nanos: u64, max_end_unix_nanos: u64) -> bool {
        // A block's spans start no earlier than its minimum start and no later than its
        // maximum end, so it can only hold matches if that range meets the query's.
        min_start_unix_nanos < self.end_unix_nanos && max_end_unix_nanos >= self.start_unix_nanos
    }

    pub(crate) fn may_hold_service(&self, services: &[String]) -> bool {
        self.service.as_ref().is_none_or(|wanted| services.iter().any(|s| s == wanted))
            && self
                .allowed_services
                .as_ref()
                .is_none_or(|allowed| services.iter().any(|s| allowed.contains(s)))
    }

    pub(crate) fn matches(&self, span: &Span) -> bool {
        let start = span.start_time_unix_nanos;
        if start < self.start_unix_nanos || start >= self.end_unix_nanos {
            return false;
        }
        let duration = span.duration_nanos();
        if self.min_duration_nanos.is_some_and(|min| duration < min)
            || self.max_duration_nanos.is_some_and(|max| duration > max)
            || self.status.is_some_and(|code| span.status.code != code)
        {
            return false;
        }
        if self
            .allowed_services
            .as_ref()
            .is_some_and(|a| !a.iter().any(|s| s == span.service_name()))
            || self
                .allowed_environments
                .as_ref()
                .is_some_and(|a| !span.environment().is_some_and(|e| a.iter().any(|x| x == e)))
        {
            return false;
        }
        if self.service.as_deref().is_some_and(|s| span.service_name() != s)
            || self.operation.as_deref().is_some_and(|op| span.operation() != op && span.name != op)
            || self.environment.as_deref().is_some_and(|e| span.environment() != Some(e))
            || self.version.as_deref().is_some_and(|v| span.version() != Some(v))
        {
            return false;
        }
        self.attributes.iter().all(|(key, wanted)| {
            span.attribute(key).and_then(|v| v.to_text()).is_some_and(|text| text == *wanted)
        })
    }
}
