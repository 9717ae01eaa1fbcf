//! Trace search filters and their evaluation on one span, whole or read from a block.

use std::borrow::Cow;

use model::{Resource, Span, StatusCode, TraceId, Value, attribute_names};

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
    /// The matching spans, newest first.
    pub spans: Vec<Span>,
    /// The whole trace in numbers, when the engine read it whole to find the matches.
    pub summary: Option<TraceSummary>,
}

/// A trace in numbers: its root, when it ran, and how many spans, services and errors.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSummary {
    /// The span without a parent, or the earliest span when the root did not arrive.
    pub root: Span,
    /// Whether `root` has no parent (false: the earliest span stands in for it).
    pub root_found: bool,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub span_count: usize,
    pub service_count: usize,
    pub error_count: usize,
}

impl TraceSummary {
    /// The numbers of a trace's spans; `None` for no spans.
    pub fn of(spans: &[Span]) -> Option<TraceSummary> {
        let earliest =
            spans.iter().min_by_key(|s| (s.start_time_unix_nanos, *s.span_id.as_bytes()))?;
        let root = spans
            .iter()
            .filter(|s| s.parent_span_id.is_none())
            .min_by_key(|s| (s.start_time_unix_nanos, *s.span_id.as_bytes()));
        let mut services: Vec<&str> = spans.iter().map(|s| s.service_name()).collect();
        services.sort_unstable();
        services.dedup();
        Some(TraceSummary {
            root: root.unwrap_or(earliest).clone(),
            root_found: root.is_some(),
            start_unix_nanos: earliest.start_time_unix_nanos,
            end_unix_nanos: spans.iter().map(|s| s.end_time_unix_nanos).max().unwrap_or(0),
            span_count: spans.len(),
            service_count: services.len(),
            error_count: spans.iter().filter(|s| s.is_error()).count(),
        })
    }

    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nanos.saturating_sub(self.start_unix_nanos)
    }
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

    /// Whether the filters need the span's own attributes (beyond its resource) when no
    /// span sets an identity attribute itself.
    pub(crate) fn needs_span_attributes(&self) -> bool {
        self.operation.is_some() || !self.attributes.is_empty()
    }

    /// Whether any filter reads the service, environment or version.
    pub(crate) fn reads_identity(&self) -> bool {
        self.service.is_some()
            || self.environment.is_some()
            || self.version.is_some()
            || self.allowed_services.is_some()
            || self.allowed_environments.is_some()
    }

    pub(crate) fn matches(&self, span: &impl SpanFields) -> bool {
        self.matches_scalars(span.start_unix_nanos(), span.duration_nanos(), span.status_code())
            && self.matches_identity(span)
            && self.matches_operation_and_attributes(span)
    }

    /// The filters on start time, duration and status: all a span's scalars decide.
    pub(crate) fn matches_scalars(
        &self,
        start_unix_nanos: u64,
        duration_nanos: u64,
        status: StatusCode,
    ) -> bool {
        (self.start_unix_nanos..self.end_unix_nanos).contains(&start_unix_nanos)
            && self.min_duration_nanos.is_none_or(|min| duration_nanos >= min)
            && self.max_duration_nanos.is_none_or(|max| duration_nanos <= max)
            && self.status.is_none_or(|code| status == code)
    }

    /// The filters on service, environment and version, and the caller's reach.
    fn matches_identity(&self, span: &impl SpanFields) -> bool {
        let service = first_str(span, attribute_names::SERVICE);
        let service = service.as_deref().unwrap_or(model::UNKNOWN_SERVICE);
        let environment = || first_str(span, attribute_names::ENVIRONMENT);
        if self.allowed_services.as_ref().is_some_and(|a| !a.iter().any(|s| s == service))
            || self
                .allowed_environments
                .as_ref()
                .is_some_and(|a| !environment().is_some_and(|e| a.iter().any(|x| *x == *e)))
        {
            return false;
        }
        self.service.as_deref().is_none_or(|s| service == s)
            && self.environment.as_deref().is_none_or(|e| environment().as_deref() == Some(e))
            && self
                .version
                .as_deref()
                .is_none_or(|v| first_str(span, attribute_names::VERSION).as_deref() == Some(v))
    }

    /// The identity filters on a span that sets no identity attribute itself, whose identity
    /// is therefore its resource's: decided once per resource.
    pub(crate) fn resource_matches_identity(&self, resource: &Resource) -> bool {
        self.matches_identity(&ResourceOnly(resource))
    }

    fn matches_operation_and_attributes(&self, span: &impl SpanFields) -> bool {
        self.operation.as_deref().is_none_or(|op| span.name() == op || operation(span) == op)
            && self.attributes.iter().all(|(key, wanted)| {
                attribute(span, key).and_then(|v| v.to_text()).is_some_and(|text| text == *wanted)
            })
    }
}

/// A span without attributes of its own, as the identity filters see one that sets none.
struct ResourceOnly<'r>(&'r Resource);

impl SpanFields for ResourceOnly<'_> {
    fn start_unix_nanos(&self) -> u64 {
        0
    }

    fn duration_nanos(&self) -> u64 {
        0
    }

    fn status_code(&self) -> StatusCode {
        StatusCode::Unset
    }

    fn name(&self) -> &str {
        ""
    }

    fn span_attribute(&self, _key: &str) -> Option<Cow<'_, Value>> {
        None
    }

    fn resource(&self) -> &Resource {
        self.0
    }
}

/// What a search filter reads of a span: a whole [`Span`], or one read from a block without
/// being built. The identity rules (`service.name` from the span, else its resource; the
/// operation from `http.route`) are `model`'s, written here once for both.
pub(crate) trait SpanFields {
    fn start_unix_nanos(&self) -> u64;
    fn duration_nanos(&self) -> u64;
    fn status_code(&self) -> StatusCode;
    fn name(&self) -> &str;
    /// The span's own attribute (not its resource's).
    fn span_attribute(&self, key: &str) -> Option<Cow<'_, Value>>;
    fn resource(&self) -> &Resource;
}

impl SpanFields for Span {
    fn start_unix_nanos(&self) -> u64 {
        self.start_time_unix_nanos
    }

    fn duration_nanos(&self) -> u64 {
        Span::duration_nanos(self)
    }

    fn status_code(&self) -> StatusCode {
        self.status.code
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn span_attribute(&self, key: &str) -> Option<Cow<'_, Value>> {
        self.attributes.iter().find(|kv| kv.key == key).map(|kv| Cow::Borrowed(&kv.value))
    }

    fn resource(&self) -> &Resource {
        &self.resource
    }
}

/// The span's attribute, else its resource's (as [`Span::attribute`]).
fn attribute<'a>(span: &'a impl SpanFields, key: &str) -> Option<Cow<'a, Value>> {
    span.span_attribute(key).or_else(|| {
        span.resource()
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| Cow::Borrowed(&kv.value))
    })
}

/// The first of `names` set to a non-blank string (as `model`'s identity rules read them).
fn first_str<'a>(span: &'a impl SpanFields, names: &[&str]) -> Option<Cow<'a, str>> {
    names.iter().find_map(|name| match attribute(span, name)? {
        Cow::Borrowed(Value::String(text)) if !text.trim().is_empty() => {
            Some(Cow::Borrowed(text.as_str()))
        }
        Cow::Owned(Value::String(text)) if !text.trim().is_empty() => Some(Cow::Owned(text)),
        _ => None,
    })
}

/// `http.route` where set (as [`Span::operation`]), else the name.
fn operation<'a>(span: &'a impl SpanFields) -> Cow<'a, str> {
    match span.span_attribute("http.route") {
        Some(Cow::Borrowed(Value::String(route))) if !route.is_empty() => Cow::Borrowed(route),
        Some(Cow::Owned(Value::String(route))) if !route.is_empty() => Cow::Owned(route),
        _ => Cow::Borrowed(span.name()),
    }
}
