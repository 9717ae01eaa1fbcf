//! Grafana Tempo's query API over spanblame's store: `GET /api/traces/{id}` and
//! `/api/v2/traces/{id}` (OTLP), `GET /api/search` (TraceQL, or the older logfmt `tags`),
//! and the tag names and values Grafana's query editor offers.

use std::collections::{BTreeMap, BTreeSet};

use model::{Span, TraceId, Value};
use serde::Serialize;
use serde_json::{Value as Json_, json};
use store::{SpanQuery, StoreError};
use traceql::{AttributeScope, BinaryOp, Field, Intrinsic, Query, Static, Trace};
use views::{Context, Visibility};

use crate::find::{self, ChangeFields};
use crate::params::{go_duration_nanos, literal, logfmt_pairs, unix_seconds};

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1000;
const DEFAULT_SPANS_PER_SPANSET: usize = 3;
const DEFAULT_LOOKBACK_NANOS: u64 = 24 * 3600 * 1_000_000_000;
/// Traces sampled for tag names and values.
const TAG_SAMPLE_TRACES: usize = 200;
const MAX_TAG_VALUES: usize = 1000;

/// A bad request, in words for the caller.
#[derive(Debug)]
pub enum TempoError {
    Invalid(String),
    Store(StoreError),
}

impl From<StoreError> for TempoError {
    fn from(e: StoreError) -> TempoError {
        TempoError::Store(e)
    }
}

impl From<traceql::ParseError> for TempoError {
    fn from(e: traceql::ParseError) -> TempoError {
        TempoError::Invalid(e.to_string())
    }
}

/// A search as `/api/search` takes it.
#[derive(Debug)]
pub struct Search {
    pub query: Query,
    pub min_trace_duration_nanos: Option<u64>,
    pub max_trace_duration_nanos: Option<u64>,
    pub limit: usize,
    pub spans_per_spanset: usize,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
}

/// Reads `/api/search`'s parameters: `q` (TraceQL) or `tags` (logfmt), `minDuration`,
/// `maxDuration`, `limit`, `start`, `end` (Unix seconds) and `spss`. Other parameters are
/// ignored, as Tempo ignores them.
pub fn parse_search(
    params: &[(String, String)],
    now_unix_nanos: u64,
) -> Result<Search, TempoError> {
    let invalid = TempoError::Invalid;
    let (mut q, mut tags) = (None, None);
    let mut search = Search {
        query: traceql::parse("{ }")?,
        min_trace_duration_nanos: None,
        max_trace_duration_nanos: None,
        limit: DEFAULT_LIMIT,
        spans_per_spanset: DEFAULT_SPANS_PER_SPANSET,
        start_unix_nanos: 0,
        end_unix_nanos: 0,
    };
    let (mut start, mut end) = (None, None);
    for (key, value) in params {
        match key.as_str() {
            "q" if !value.trim().is_empty() => q = Some(value.as_str()),
            "tags" if !value.trim().is_empty() => tags = Some(value.as_str()),
            "minDuration" if !value.is_empty() => {
                search.min_trace_duration_nanos =
                    Some(go_duration_nanos(key, value).map_err(invalid)?)
            }
            "maxDuration" if !value.is_empty() => {
                search.max_trace_duration_nanos =
                    Some(go_duration_nanos(key, value).map_err(invalid)?)
            }
            "limit" => search.limit = count(key, value, MAX_LIMIT)?,
            "spss" => search.spans_per_spanset = count(key, value, MAX_LIMIT)?,
            "start" => start = Some(unix_seconds(key, value).map_err(invalid)?),
            "end" => end = Some(unix_seconds(key, value).map_err(invalid)?),
            _ => {}
        }
    }
    search.query = match (q, tags) {
        (Some(_), Some(_)) => {
            return Err(invalid("give `q` (TraceQL) or `tags` (logfmt), not both".into()));
        }
        (Some(q), None) => traceql::parse(q)?,
        (None, Some(tags)) => tags_query(tags)?,
        (None, None) => search.query,
    };
    // Tempo's `end` is the end of the second it names.
    search.end_unix_nanos = end.map_or(now_unix_nanos, |e| e.saturating_add(1_000_000_000));
    search.start_unix_nanos =
        start.unwrap_or_else(|| search.end_unix_nanos.saturating_sub(DEFAULT_LOOKBACK_NANOS));
    if search.start_unix_nanos >= search.end_unix_nanos {
        return Err(invalid("`start` must be before `end`".into()));
    }
    Ok(search)
}

fn count(key: &str, value: &str, max: usize) -> Result<usize, TempoError> {
    value.parse().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
        TempoError::Invalid(format!("`{key}` must be a number from 1 to {max}; got `{value}`"))
    })
}

/// The older tag search as TraceQL: every `key=value` pair on one span, `name` the span's
/// name and anything else an attribute of the span or its resource.
fn tags_query(tags: &str) -> Result<Query, TempoError> {
    let pairs = logfmt_pairs(tags).map_err(TempoError::Invalid)?;
    let condition = pairs
        .into_iter()
        .map(|(key, value)| {
            let field = match key.as_str() {
                "name" => Field::Intrinsic(Intrinsic::Name),
                "status.code" | "status" => Field::Intrinsic(Intrinsic::Status),
                _ => Field::Attribute(traceql::Attribute { scope: AttributeScope::Any, name: key }),
            };
            let value = match &field {
                Field::Intrinsic(Intrinsic::Status) => match model::StatusCode::parse(&value) {
                    Some(status) => Static::Status(status),
                    None => Static::Str(value),
                },
                Field::Intrinsic(Intrinsic::Name) => Static::Str(value),
                _ => literal(&value),
            };
            Field::Binary(Box::new(field), BinaryOp::Eq, Box::new(Field::Static(value)))
        })
        .reduce(|a, b| Field::Binary(Box::new(a), BinaryOp::And, Box::new(b)));
    let pipeline =
        traceql::Pipeline { first: traceql::SpansetExpr::Filter(condition), stages: Vec::new() };
    // The canonical text reads back to the same query (property-tested in `traceql`).
    Ok(traceql::parse(&pipeline.to_string())?)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchResponse {
    pub traces: Vec<TraceHit>,
    pub metrics: SearchMetrics,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchMetrics {
    pub inspected_traces: u64,
    /// Tempo writes 64-bit counts as strings.
    pub inspected_bytes: String,
    pub completed_jobs: u64,
    pub total_jobs: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceHit {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    pub root_service_name: String,
    /// Absent when the root is another team's span.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_trace_name: Option<String>,
    pub start_time_unix_nano: String,
    pub duration_ms: u64,
    /// The first spanset, as Tempo still writes it for older clients.
    pub span_set: SpanSet,
    pub span_sets: Vec<SpanSet>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SpanSet {
    pub spans: Vec<SpanHit>,
    pub matched: usize,
    /// The `by(…)` values this spanset groups.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<Json_>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpanHit {
    #[serde(rename = "spanID")]
    pub span_id: String,
    pub name: String,
    pub start_time_unix_nano: String,
    pub duration_nanos: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<Json_>,
}

/// Runs a search: candidates from the store (narrowed by what every match must meet),
/// newest first, each read whole and run through the query within the caller's reach.
pub fn search(
    ctx: &Context,
    visibility: &Visibility,
    search: &Search,
) -> Result<SearchResponse, TempoError> {
    let mut ext = ChangeFields::new(ctx);
    let found = find::traces(
        ctx,
        visibility,
        &find::Find {
            min_trace_duration_nanos: search.min_trace_duration_nanos,
            max_trace_duration_nanos: search.max_trace_duration_nanos,
            ..find::Find::in_window(
                &search.query,
                search.start_unix_nanos,
                search.end_unix_nanos,
                search.limit,
            )
        },
        &mut ext,
    )?;
    let mut traces = found.traces;
    traces.sort_by_key(|t| std::cmp::Reverse(t.start_unix_nanos));
    let named = search.query.named_fields();
    let hits = traces.iter().map(|t| hit(t, visibility, search, &named, &mut ext)).collect();
    Ok(SearchResponse {
        traces: hits,
        metrics: SearchMetrics {
            inspected_traces: found.inspected_traces as u64,
            inspected_bytes: found.inspected_bytes.to_string(),
            completed_jobs: 1,
            total_jobs: 1,
        },
    })
}

fn hit(
    found: &find::Found,
    visibility: &Visibility,
    search: &Search,
    named: &[Field],
    ext: &mut ChangeFields<'_>,
) -> TraceHit {
    let spans = &found.spans;
    let trace = Trace::new(spans, find::visibility_of(visibility, spans));
    let sets = &found.sets;
    let span_sets: Vec<SpanSet> = sets
        .iter()
        .map(|set| {
            let mut shown = named.to_vec();
            shown.extend(set.selected.iter().filter(|f| !named.contains(f)).cloned());
            let mut indexes = set.spans.clone();
            indexes.sort_by_key(|i| std::cmp::Reverse(spans[*i].start_time_unix_nanos));
            SpanSet {
                spans: indexes
                    .iter()
                    .take(search.spans_per_spanset)
                    .map(|i| span_hit(&trace, *i, &shown, ext))
                    .collect(),
                matched: set.spans.len(),
                attributes: set.by.iter().map(|(key, value)| attribute(key, value)).collect(),
            }
        })
        .collect();
    TraceHit {
        trace_id: spans[0].trace_id.to_hex(),
        root_service_name: found.root_service.clone(),
        root_trace_name: found.root_name.clone(),
        start_time_unix_nano: found.start_unix_nanos.to_string(),
        duration_ms: found.duration_nanos / 1_000_000,
        span_set: span_sets[0].clone(),
        span_sets,
    }
}

fn span_hit(
    trace: &Trace<'_>,
    index: usize,
    shown: &[Field],
    ext: &mut ChangeFields<'_>,
) -> SpanHit {
    let span = &trace.spans[index];
    let attributes = shown
        .iter()
        .filter(|f| !matches!(f, Field::Intrinsic(Intrinsic::Name | Intrinsic::Duration)))
        .filter_map(|field| {
            let value = trace.value(index, field, ext);
            let key = match field {
                Field::Attribute(a) => a.name.clone(),
                other => other.to_string(),
            };
            (value != Static::Nil).then(|| attribute(&key, &value))
        })
        .collect();
    SpanHit {
        span_id: span.span_id.to_hex(),
        name: span.name.clone(),
        start_time_unix_nano: span.start_time_unix_nanos.to_string(),
        duration_nanos: span.duration_nanos().to_string(),
        attributes,
    }
}

/// `{"key": …, "value": {"stringValue": …}}`, as OTLP/JSON writes an attribute.
fn attribute(key: &str, value: &Static) -> Json_ {
    let value = match value {
        Static::Str(s) => Value::String(s.clone()),
        Static::Int(n) => Value::Int(*n),
        Static::Float(x) => Value::Double(*x),
        Static::Bool(b) => Value::Bool(*b),
        other => Value::String(other.to_string()),
    };
    json!({"key": key, "value": serde_json::to_value(otlp::any_value(&value)).unwrap_or_default()})
}

/// A trace by id as OTLP `TracesData`, other teams' spans as redacted stand-ins (ids, times,
/// status code and service only); `None` when the caller may see none of its spans.
pub fn trace(
    ctx: &Context,
    visibility: &Visibility,
    id: &TraceId,
) -> Result<Option<otlp::TracesData>, StoreError> {
    let spans = ctx.store.trace(id)?;
    let visible = find::visibility_of(visibility, &spans);
    if !visible.contains(&true) {
        return Ok(None);
    }
    let shown: Vec<Span> = spans
        .into_iter()
        .zip(visible)
        .map(|(span, visible)| if visible { span } else { find::redacted(span) })
        .collect();
    Ok(Some(otlp::traces_data(&shown)))
}

/// Tag names by scope, from the newest traces the caller may see (`scope`: `span`,
/// `resource`, `intrinsic`, or all).
pub fn tag_names(
    ctx: &Context,
    visibility: &Visibility,
    start_unix_nanos: u64,
    end_unix_nanos: u64,
) -> Result<BTreeMap<&'static str, BTreeSet<String>>, StoreError> {
    let mut names: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for span in sample(ctx, visibility, start_unix_nanos, end_unix_nanos)? {
        names.entry("span").or_default().extend(span.attributes.iter().map(|kv| kv.key.clone()));
        names
            .entry("resource")
            .or_default()
            .extend(span.resource.attributes.iter().map(|kv| kv.key.clone()));
    }
    names.entry("resource").or_default().insert("service.name".into());
    names.entry("span").or_default();
    let intrinsics = [
        "duration",
        "kind",
        "name",
        "rootName",
        "rootServiceName",
        "status",
        "statusMessage",
        "traceDuration",
    ];
    names.insert("intrinsic", intrinsics.iter().map(|s| s.to_string()).collect());
    Ok(names)
}

/// The spans of the newest traces in the window that the caller may see (their matched
/// spans, which an empty filter makes every span).
fn sample(
    ctx: &Context,
    visibility: &Visibility,
    start: u64,
    end: u64,
) -> Result<Vec<Span>, StoreError> {
    let mut query = SpanQuery {
        start_unix_nanos: start,
        end_unix_nanos: end,
        limit: TAG_SAMPLE_TRACES,
        ..SpanQuery::default()
    };
    (query.allowed_services, query.allowed_environments) = views::reach(visibility);
    Ok(ctx
        .store
        .search(&query)?
        .into_iter()
        .flat_map(|m| m.spans)
        .filter(|s| views::traces::visible(visibility, s))
        .collect())
}

/// A tag's values, typed as TraceQL reads them, from the newest traces the caller may see;
/// with `q`, only from the spans it selects. `tag` is a TraceQL field (`resource.service.name`,
/// `span.http.method`, `.a`, `status`) or, for the v1 API, an attribute name.
pub fn tag_values(
    ctx: &Context,
    visibility: &Visibility,
    tag: &str,
    q: Option<&str>,
    start_unix_nanos: u64,
    end_unix_nanos: u64,
) -> Result<Vec<Static>, TempoError> {
    let field = tag_field(tag)?;
    let query = match q {
        Some(q) if !q.trim().is_empty() => traceql::parse(q)?,
        _ => traceql::parse("{ }")?,
    };
    let mut values: Vec<Static> = Vec::new();
    let push = |value: Static, values: &mut Vec<Static>| {
        if value != Static::Nil && values.len() < MAX_TAG_VALUES && !values.contains(&value) {
            values.push(value);
        }
    };
    // Service names come whole from the catalog when nothing narrows them.
    let is_service = matches!(&field, Field::Attribute(a) if a.name == "service.name" && a.scope != AttributeScope::Span)
        || field == Field::Intrinsic(Intrinsic::RootServiceName);
    if is_service && q.is_none_or(|q| q.trim().is_empty() || q.trim() == "{}" || q.trim() == "{ }")
    {
        for service in ctx.store.services()? {
            if visibility.allows_service(&service.name) {
                push(Static::Str(service.name.clone()), &mut values);
            }
        }
        return Ok(values);
    }
    let mut candidates = SpanQuery {
        start_unix_nanos,
        end_unix_nanos,
        limit: TAG_SAMPLE_TRACES,
        ..SpanQuery::default()
    };
    find::push_down(&mut candidates, &query.required());
    (candidates.allowed_services, candidates.allowed_environments) = views::reach(visibility);
    let mut ext = ChangeFields::new(ctx);
    for found in ctx.store.search(&candidates)? {
        let spans = ctx.store.trace(&found.trace_id)?;
        let trace = Trace::new(&spans, find::visibility_of(visibility, &spans));
        for set in query.evaluate(&trace, &mut ext) {
            for index in set.spans {
                push(trace.value(index, &field, &mut ext), &mut values);
            }
        }
    }
    Ok(values)
}

/// A tag as a field: a TraceQL field (`resource.service.name`, `name`), else an attribute
/// of the span or its resource (`http.method`, as the v1 API names tags).
fn tag_field(tag: &str) -> Result<Field, TempoError> {
    let scoped = tag.starts_with('.')
        || tag.starts_with("span.")
        || tag.starts_with("resource.")
        || tag.contains(':')
        || tag.starts_with("change.")
        || tag.starts_with("deploy.");
    let as_field = |text: &str| -> Result<Field, TempoError> {
        let query = traceql::parse(&format!("{{ {text} }}"))?;
        match query.pipeline.first {
            traceql::SpansetExpr::Filter(Some(
                field @ (Field::Attribute(_) | Field::Intrinsic(_) | Field::Change(_)),
            )) => Ok(field),
            _ => Err(TempoError::Invalid(format!(
                "`{tag}` is not a tag; name an attribute (resource.service.name, span.http.method) or an intrinsic (name, status)"
            ))),
        }
    };
    if scoped || Intrinsic::from_name(tag).is_some() {
        as_field(tag)
    } else {
        Ok(Field::Attribute(traceql::Attribute {
            scope: AttributeScope::Any,
            name: tag.to_owned(),
        }))
    }
}

/// A value as `/api/v2/search/tag/…/values` types it.
pub fn typed_value(value: &Static) -> Json_ {
    let (kind, text) = match value {
        Static::Str(s) => ("string", s.clone()),
        Static::Int(n) => ("int", n.to_string()),
        Static::Float(x) => ("float", x.to_string()),
        Static::Bool(b) => ("bool", b.to_string()),
        Static::Duration(_) => ("duration", value.to_string()),
        Static::Status(_) | Static::Kind(_) => ("keyword", value.to_string()),
        Static::Nil => ("nil", "nil".to_owned()),
    };
    json!({"type": kind, "value": text})
}

/// A value as the v1 API lists it: its text.
pub fn value_text(value: &Static) -> String {
    match value {
        Static::Str(s) => s.clone(),
        other => other.to_string(),
    }
}
