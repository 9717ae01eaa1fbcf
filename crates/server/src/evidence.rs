//! What a regression looks like in the spans themselves: exemplar traces before and after,
//! the code paths that got slower, child spans that appeared or multiplied, and attribute
//! values over-represented in slow spans. Read once per regressed finding from a bounded
//! sample of stored traces; detection itself never reads raw spans.

use std::collections::{BTreeMap, HashMap, HashSet};

use analysis::suspects::{AttributeSkew, ChildChange, CodeLocation, Evidence};
use model::{Deploy, Span, SpanId, Value};
use serde_json::{Value as Json_, json};
use store::{SpanQuery, SpanStore, StoreError};

use crate::api::rfc3339;

/// Matching spans read per side; traces opened per side for structure.
const SAMPLE_SPANS: usize = 400;
const SAMPLE_TRACES: usize = 40;

/// The spans of one operation on one side of a deploy.
pub(crate) struct Side {
    /// The operation's own spans, in the sample.
    pub(crate) spans: Vec<Span>,
    /// Whole traces of up to [`SAMPLE_TRACES`] of them, slowest first.
    pub(crate) traces: Vec<Vec<Span>>,
}

/// Which spans one side is.
pub(crate) struct SideQuery<'a> {
    pub(crate) deploy: &'a Deploy,
    pub(crate) operation: &'a str,
    pub(crate) start_unix_nanos: u64,
    pub(crate) end_unix_nanos: u64,
    /// The deployed version's spans (after), or every other version's (before).
    pub(crate) deployed: bool,
}

pub(crate) fn read_side(store: &SpanStore, query: &SideQuery<'_>) -> Result<Side, StoreError> {
    let deploy = query.deploy;
    let found = store.search(&SpanQuery {
        service: Some(deploy.service.clone()),
        operation: Some(query.operation.to_owned()),
        environment: (!deploy.environment.is_empty()).then(|| deploy.environment.clone()),
        version: query.deployed.then(|| deploy.version.clone()),
        start_unix_nanos: query.start_unix_nanos,
        end_unix_nanos: query.end_unix_nanos,
        limit: SAMPLE_SPANS,
        ..SpanQuery::default()
    })?;
    let mut spans: Vec<Span> = found
        .into_iter()
        .flat_map(|m| m.spans)
        .filter(|s| s.operation() == query.operation)
        .filter(|s| query.deployed || s.version() != Some(deploy.version.as_str()))
        .collect();
    spans.sort_by_key(|s| std::cmp::Reverse(s.duration_nanos()));
    let mut traces = Vec::new();
    let mut opened = HashSet::new();
    // The slowest half and a spread of the rest: structure is compared per parent span.
    let step = (spans.len() / SAMPLE_TRACES).max(1);
    for span in spans.iter().step_by(step) {
        if traces.len() >= SAMPLE_TRACES {
            break;
        }
        if opened.insert(span.trace_id) {
            traces.push(store.trace(&span.trace_id)?);
        }
    }
    Ok(Side { spans, traces })
}

/// The slowest and a typical (median) span's trace, as API links.
pub(crate) fn exemplars(side: &Side) -> Json_ {
    let slowest = side.spans.first();
    let typical = side.spans.get(side.spans.len() / 2);
    let view = |span: Option<&Span>| {
        span.map(|s| {
            json!({
                "trace_id": s.trace_id.to_string(),
                "span_id": s.span_id.to_string(),
                "duration_ms": s.duration_nanos() as f64 / 1e6,
                "start": rfc3339(s.start_time_unix_nanos),
                "version": s.version(),
                "url": format!("/api/v1/traces/{}", s.trace_id),
            })
        })
    };
    json!({"slowest": view(slowest), "typical": view(typical), "sampled_spans": side.spans.len()})
}

/// Per operation span: its descendants in the same service, by name.
#[derive(Default)]
struct Structure {
    parents: usize,
    /// name -> (count, total duration, a span with that name carrying `code.*`)
    children: BTreeMap<String, (u64, u64, Option<model::CodeLocation>)>,
}

fn structure(side: &Side, operation: &str) -> Structure {
    let mut out = Structure::default();
    for trace in &side.traces {
        let children_of: HashMap<SpanId, Vec<&Span>> =
            trace.iter().fold(HashMap::new(), |mut map, span| {
                if let Some(parent) = span.parent_span_id {
                    map.entry(parent).or_default().push(span);
                }
                map
            });
        for root in trace.iter().filter(|s| s.operation() == operation) {
            out.parents += 1;
            let mut stack: Vec<&Span> = children_of.get(&root.span_id).cloned().unwrap_or_default();
            let mut seen = HashSet::new();
            while let Some(span) = stack.pop() {
                if !seen.insert(span.span_id) {
                    continue;
                }
                let entry = out.children.entry(child_name(span)).or_insert((0, 0, None));
                entry.0 += 1;
                entry.1 += span.duration_nanos();
                let code = span.identity().code;
                if entry.2.is_none() && !code.is_empty() {
                    entry.2 = Some(code);
                }
                // Only the service's own code paths: stop at calls into other services.
                if span.service_name() == root.service_name() {
                    stack.extend(children_of.get(&span.span_id).into_iter().flatten());
                }
            }
        }
    }
    out
}

/// A child span's name, with the statement or peer when it is a client call.
fn child_name(span: &Span) -> String {
    let attribute = |key: &str| span.attribute(key).and_then(Value::as_str);
    if let Some(system) = attribute("db.system.name").or_else(|| attribute("db.system")) {
        return format!("{system} {}", span.name);
    }
    span.operation().to_owned()
}

/// Evidence for ranking suspects from the two sides of one regressed operation.
pub(crate) fn gather(operation: &str, before: &Side, after: &Side) -> Evidence {
    let (b, a) = (structure(before, operation), structure(after, operation));
    let per_parent =
        |s: &Structure, name: &str, field: fn(&(u64, u64, Option<model::CodeLocation>)) -> u64| {
            s.children.get(name).map_or(0.0, |entry| field(entry) as f64 / s.parents.max(1) as f64)
        };
    let mut child_changes = Vec::new();
    let mut growth: Vec<(f64, Option<model::CodeLocation>)> = Vec::new();
    for (name, entry) in &a.children {
        let before_count = per_parent(&b, name, |e| e.0);
        let after_count = per_parent(&a, name, |e| e.0);
        let new = before_count == 0.0 && after_count > 0.0 && b.parents > 0;
        let multiplied = before_count > 0.0
            && after_count >= 1.5 * before_count
            && after_count - before_count >= 1.0;
        if new || multiplied {
            child_changes.push(ChildChange {
                name: name.clone(),
                before_per_parent: before_count,
                after_per_parent: after_count,
            });
        }
        let added_nanos = per_parent(&a, name, |e| e.1) - per_parent(&b, name, |e| e.1);
        if added_nanos > 0.0 {
            growth.push((added_nanos, entry.2.clone()));
        }
    }
    let total_growth: f64 = growth.iter().map(|(g, _)| g).sum();
    growth.sort_by(|x, y| y.0.total_cmp(&x.0));
    let mut code_locations: Vec<CodeLocation> = growth
        .into_iter()
        .take(3)
        .filter_map(|(added, code)| Some((added, code?)))
        .map(|(added, code)| location(&code, added / total_growth.max(1.0)))
        .collect();
    // The operation's own code location, when its spans name one.
    if let Some(code) = after.spans.iter().map(|s| s.identity().code).find(|c| !c.is_empty()) {
        code_locations.push(location(&code, 0.3));
    }
    Evidence {
        operations: vec![operation.to_owned()],
        code_locations,
        child_changes,
        slow_attributes: skewed_attributes(&after.spans),
    }
}

fn location(code: &model::CodeLocation, share: f64) -> CodeLocation {
    CodeLocation {
        function: code.function_name.clone(),
        file: code.file_path.clone(),
        line: code.line_number.and_then(|l| u32::try_from(l).ok()),
        share,
    }
}

/// Keys whose values identify one request rather than a kind of request.
fn is_high_cardinality(key: &str) -> bool {
    key.ends_with(".id")
        || key.ends_with("_id")
        || matches!(key, "url.full" | "url.path" | "url.query" | "http.url" | "http.target")
        || key.starts_with("code.")
}

/// Attribute values at least 30 points more common among the slowest quarter of spans than
/// among the rest (feature flags first), from span attributes and `feature_flag` events.
fn skewed_attributes(spans: &[Span]) -> Vec<AttributeSkew> {
    // `spans` is sorted slowest first.
    let slow_count = spans.len() / 4;
    if slow_count < 5 {
        return Vec::new();
    }
    let pairs = |span: &Span| -> HashSet<(String, String)> {
        let events = span
            .events
            .iter()
            .filter(|e| e.name.starts_with("feature_flag"))
            .flat_map(|e| &e.attributes);
        span.attributes
            .iter()
            .chain(events)
            .filter(|kv| !is_high_cardinality(&kv.key))
            .filter_map(|kv| {
                let text = kv.value.to_text()?;
                (text.len() <= 64).then(|| (kv.key.clone(), text))
            })
            .collect()
    };
    let mut counts: HashMap<(String, String), (usize, usize)> = HashMap::new();
    for (i, span) in spans.iter().enumerate() {
        for pair in pairs(span) {
            let entry = counts.entry(pair).or_default();
            if i < slow_count { entry.0 += 1 } else { entry.1 += 1 }
        }
    }
    let fast_count = spans.len() - slow_count;
    let mut skews: Vec<AttributeSkew> = counts
        .into_iter()
        .map(|((key, value), (slow, fast))| AttributeSkew {
            key,
            value,
            slow_share: slow as f64 / slow_count as f64,
            fast_share: fast as f64 / fast_count as f64,
        })
        .filter(|s| s.slow_share - s.fast_share >= 0.3)
        .collect();
    let is_flag = |s: &AttributeSkew| s.key.contains("flag");
    skews.sort_by(|x, y| {
        is_flag(y)
            .cmp(&is_flag(x))
            .then((y.slow_share - y.fast_share).total_cmp(&(x.slow_share - x.fast_share)))
            .then(x.key.cmp(&y.key))
    });
    skews.truncate(5);
    skews
}
