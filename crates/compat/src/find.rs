//! Finding traces for the compatible APIs: candidates from the store, narrowed by what every
//! match of a TraceQL query must meet, read whole and run through the query within the
//! caller's reach; spanblame's own fields resolved from the change graph; and other teams'
//! spans as stand-ins.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use model::{KeyValue, Resource, Scope, Span, TraceId, Value};
use store::{SpanQuery, StoreError, TraceSummary};
use traceql::{
    AttributeScope, BinaryOp, ChangeField, Condition, Extensions, Field, Intrinsic, Query, Spanset,
    Static, Trace,
};
use views::changes::ChangeResolver;
use views::{Context, Visibility};

/// Traces read whole and run through the query per search, at most: a query the store
/// cannot narrow (`{ name = "x" }`) answers from the newest this many candidates.
pub const MAX_INSPECTED_TRACES: usize = 500;
/// Most candidate traces asked of the store in one page: the first page asks for as many as
/// the search wants (enough when the store's filters are the query's own), each next one
/// twice the last.
const MAX_PAGE_TRACES: usize = 400;

/// What to find.
pub struct Find<'q> {
    pub query: &'q Query,
    /// The time window and any filters the caller knows apply (the query's own are added).
    pub candidates: SpanQuery,
    pub min_trace_duration_nanos: Option<u64>,
    pub max_trace_duration_nanos: Option<u64>,
    /// Most traces to return.
    pub limit: usize,
    /// Whether `Found::spans` must be the whole trace (Jaeger shows whole traces); otherwise
    /// a query that judges spans one at a time runs on the spans the store matched.
    pub whole_traces: bool,
}

impl<'q> Find<'q> {
    /// The newest `limit` traces `query` matches with a span starting in
    /// `[start, end)`, whatever their duration, each judged as the query needs.
    pub fn in_window(
        query: &'q Query,
        start_unix_nanos: u64,
        end_unix_nanos: u64,
        limit: usize,
    ) -> Find<'q> {
        Find {
            query,
            candidates: SpanQuery { start_unix_nanos, end_unix_nanos, ..SpanQuery::default() },
            min_trace_duration_nanos: None,
            max_trace_duration_nanos: None,
            limit,
            whole_traces: false,
        }
    }

    /// Only spans of this operation (`http.route`, else the name) are candidates.
    pub fn with_operation(mut self, operation: Option<String>) -> Find<'q> {
        self.candidates.operation = operation;
        self
    }
}

/// A trace the query matched: its spans (the whole trace, or for a query that judges spans
/// one at a time, those the store's search matched), the spansets the query selected, and
/// the whole trace's root, start and duration.
pub struct Found {
    pub spans: Vec<Span>,
    pub sets: Vec<Spanset>,
    pub root_service: String,
    /// The root's name; `None` when it is another team's span.
    pub root_name: Option<String>,
    pub start_unix_nanos: u64,
    pub duration_nanos: u64,
}

pub struct Traces {
    /// Newest candidates first.
    pub traces: Vec<Found>,
    pub inspected_traces: usize,
    /// Roughly what the inspected traces weigh (names and attribute keys), for Tempo's metrics.
    pub inspected_bytes: usize,
}

/// The newest traces `find.query` matches, pages of candidates at a time, until `limit` are
/// found or [`MAX_INSPECTED_TRACES`] are read.
pub fn traces(
    ctx: &Context,
    visibility: &Visibility,
    find: &Find<'_>,
    ext: &mut ChangeFields<'_>,
) -> Result<Traces, StoreError> {
    let mut candidates =
        SpanQuery { limit: find.limit.clamp(1, MAX_PAGE_TRACES), ..find.candidates.clone() };
    push_down(&mut candidates, &find.query.required());
    (candidates.allowed_services, candidates.allowed_environments) = views::reach(visibility);
    let whole = find.whole_traces || find.query.needs_whole_trace();
    let mut seen: HashSet<TraceId> = HashSet::new();
    let mut out = Traces { traces: Vec::new(), inspected_traces: 0, inspected_bytes: 0 };
    'pages: loop {
        let page = ctx.store.search(&candidates)?;
        let (page_len, oldest) =
            (page.len(), page.iter().map(|m| m.newest_start_unix_nanos()).min());
        for candidate in page {
            if !seen.insert(candidate.trace_id) {
                continue;
            }
            if out.inspected_traces == MAX_INSPECTED_TRACES || out.traces.len() == find.limit {
                break 'pages;
            }
            out.inspected_traces += 1;
            // The engine's summary and matched spans serve a query that judges spans one at
            // a time; anything else reads the whole trace.
            let (spans, summary) = match candidate.summary {
                Some(summary) if !whole => (candidate.spans, summary),
                _ => {
                    let spans = ctx.store.trace(&candidate.trace_id)?;
                    let Some(summary) = TraceSummary::of(&spans) else { continue };
                    (spans, summary)
                }
            };
            out.inspected_bytes += spans.iter().map(approximate_bytes).sum::<usize>();
            let duration = summary.duration_nanos();
            if find.min_trace_duration_nanos.is_some_and(|min| duration < min)
                || find.max_trace_duration_nanos.is_some_and(|max| duration > max)
            {
                continue;
            }
            let trace = Trace::new(&spans, visibility_of(visibility, &spans));
            let sets = find.query.evaluate(&trace, ext);
            if sets.is_empty() {
                continue;
            }
            let root = &summary.root;
            out.traces.push(Found {
                root_service: root.service_name().to_owned(),
                root_name: views::traces::visible(visibility, root).then(|| root.name.clone()),
                start_unix_nanos: summary.start_unix_nanos,
                duration_nanos: duration,
                spans,
                sets,
            });
        }
        if out.traces.len() >= find.limit || out.inspected_traces >= MAX_INSPECTED_TRACES {
            break;
        }
        // The next page ends where this one's oldest match began (the end is exclusive).
        match oldest {
            Some(oldest)
                if page_len == candidates.limit && oldest > candidates.start_unix_nanos =>
            {
                candidates.end_unix_nanos = oldest;
                candidates.limit = (candidates.limit * 2).min(MAX_PAGE_TRACES);
            }
            _ => break,
        }
    }
    Ok(out)
}

/// The store's filters that keep every trace the query can match: the service, span name,
/// duration bounds, status and attribute equalities of the spans every match needs.
pub fn push_down(query: &mut SpanQuery, required: &[Condition]) {
    for condition in required {
        let text = match &condition.value {
            Static::Str(s) => Some(s.clone()),
            Static::Int(n) => Some(n.to_string()),
            Static::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        match (&condition.field, condition.op, &condition.value) {
            (Field::Attribute(a), BinaryOp::Eq, Static::Str(service))
                if a.name == "service.name"
                    && a.scope != AttributeScope::Span
                    && query.service.is_none() =>
            {
                query.service = Some(service.clone())
            }
            (
                Field::Intrinsic(Intrinsic::Duration),
                BinaryOp::Gt | BinaryOp::Ge,
                Static::Duration(d),
            ) => query.min_duration_nanos = Some(query.min_duration_nanos.unwrap_or(0).max(*d)),
            (
                Field::Intrinsic(Intrinsic::Duration),
                BinaryOp::Lt | BinaryOp::Le,
                Static::Duration(d),
            ) => {
                query.max_duration_nanos = Some(query.max_duration_nanos.map_or(*d, |m| m.min(*d)))
            }
            (Field::Intrinsic(Intrinsic::Status), BinaryOp::Eq, Static::Status(s)) => {
                query.status = Some(*s)
            }
            // The store's operation filter takes a span whose name or `http.route` is the
            // text (checked against the name bloom): every span of that name, and more.
            (Field::Intrinsic(Intrinsic::Name), BinaryOp::Eq, Static::Str(name))
                if query.operation.is_none() =>
            {
                query.operation = Some(name.clone())
            }
            (Field::Attribute(a), BinaryOp::Eq, _) if text.is_some() => {
                query.attributes.push((a.name.clone(), text.expect("checked")))
            }
            _ => {}
        }
    }
}

/// Whether the caller may see a span: its service (and environment) is in their reach.
pub fn visibility_of(visibility: &Visibility, spans: &[Span]) -> Vec<bool> {
    spans.iter().map(|s| views::traces::visible(visibility, s)).collect()
}

fn approximate_bytes(span: &Span) -> usize {
    let kv = |attributes: &[KeyValue]| attributes.iter().map(|kv| kv.key.len() + 16).sum::<usize>();
    64 + span.name.len() + kv(&span.attributes)
}

/// spanblame's fields of a span, from the change graph, resolved once per identity.
pub struct ChangeFields<'a> {
    ctx: &'a Context,
    resolver: ChangeResolver<'a>,
    /// Deploys by (service, environment), oldest first.
    deploys: HashMap<(String, Option<String>), Vec<model::Deploy>>,
}

impl<'a> ChangeFields<'a> {
    pub fn new(ctx: &'a Context) -> ChangeFields<'a> {
        ChangeFields { ctx, resolver: ChangeResolver::new(ctx), deploys: HashMap::new() }
    }

    fn deploy_id(&mut self, span: &Span) -> Option<u64> {
        let identity = span.identity();
        let version = identity.version.as_deref()?;
        let key = (identity.service.clone(), identity.environment.clone());
        if !self.deploys.contains_key(&key) {
            let mut deploys =
                self.ctx.store.deploys(Some(&key.0), key.1.as_deref(), 10_000).ok()?;
            deploys.sort_by_key(|d| d.started_at_unix_nanos);
            self.deploys.insert(key.clone(), deploys);
        }
        self.deploys[&key]
            .iter()
            .rev()
            .find(|d| d.version == version && d.started_at_unix_nanos <= span.start_time_unix_nanos)
            .or_else(|| self.deploys[&key].iter().find(|d| d.version == version))
            .map(|d| d.id)
    }
}

impl Extensions for ChangeFields<'_> {
    fn value(&mut self, trace: &Trace<'_>, index: usize, field: ChangeField) -> Option<Static> {
        let span = &trace.spans[index];
        if field == ChangeField::DeployId {
            return self.deploy_id(span).and_then(|id| i64::try_from(id).ok()).map(Static::Int);
        }
        let identity = span.identity();
        let change = self
            .resolver
            .change(
                &identity.service,
                identity.version.as_deref(),
                identity.commit.as_deref(),
                &identity.code,
            )
            .ok()?;
        let text = |value: Option<&String>| value.map(|s| Static::Str(s.clone()));
        match field {
            ChangeField::Commit => text(change.commit.as_ref().map(|c| &c.sha)),
            ChangeField::Author => text(change.commit.as_ref().and_then(|c| c.author.as_ref())),
            ChangeField::Review => change.review.map(|r| Static::Str(r.label())),
            ChangeField::BlameCommit => text(change.blame.as_ref().map(|b| &b.commit.sha)),
            ChangeField::BlameAuthor => {
                text(change.blame.as_ref().and_then(|b| b.commit.author.as_ref()))
            }
            ChangeField::DeployId => None,
        }
    }
}

/// Another team's span as a stand-in that keeps a shared trace whole: its ids, times, status
/// code and service, nothing else (no name, attributes, events, links or resource).
pub fn redacted(span: Span) -> Span {
    let service = KeyValue::new("service.name", Value::String(span.service_name().to_owned()));
    Span {
        name: "(another team's span)".into(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status: model::Status { code: span.status.code, message: String::new() },
        resource: Arc::new(Resource { attributes: vec![service], ..Resource::default() }),
        scope: Arc::new(Scope::default()),
        trace_state: String::new(),
        ..span
    }
}
