//! What a regression looks like in the spans themselves, from a bounded sample of traces
//! before and after a deploy: the code paths that got slower (child spans whose time per
//! call grew, with their `code.*` location), child spans that appeared or multiplied (N+1, a
//! new downstream call, a new statement), and attribute values over-represented in the
//! slowest spans (feature flags first). The result feeds [`crate::suspects::rank`].

use std::collections::{BTreeMap, HashMap, HashSet};

use model::{Span, SpanId, Value};

use crate::suspects::{AttributeSkew, ChildChange, CodeLocation, Evidence};

/// The spans of one operation on one side of a deploy.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// The operation's own spans, slowest first.
    pub spans: Vec<Span>,
    /// Whole traces of some of them.
    pub traces: Vec<Vec<Span>>,
}

/// Per operation span: its descendants in the same service, by name.
#[derive(Default)]
struct Structure {
    parents: usize,
    children: BTreeMap<String, ChildStats>,
}

/// All spans of one child name under the sampled operation spans.
#[derive(Default)]
struct ChildStats {
    count: u64,
    nanos: u64,
    errors: u64,
    /// From the first such span that names a `code.*` location.
    code: Option<model::CodeLocation>,
}

fn structure(side: &Sample, operation: &str) -> Structure {
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
                let entry = out.children.entry(child_name(span)).or_default();
                entry.count += 1;
                entry.nanos += span.duration_nanos();
                entry.errors += u64::from(span.is_error());
                let code = span.identity().code;
                if entry.code.is_none() && !code.is_empty() {
                    entry.code = Some(code);
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
pub fn gather(operation: &str, before: &Sample, after: &Sample) -> Evidence {
    let (b, a) = (structure(before, operation), structure(after, operation));
    let per_parent = |s: &Structure, name: &str, field: fn(&ChildStats) -> u64| {
        s.children.get(name).map_or(0.0, |entry| field(entry) as f64 / s.parents.max(1) as f64)
    };
    let mut child_changes = Vec::new();
    let mut growth: Vec<(f64, Option<model::CodeLocation>)> = Vec::new();
    let mut failing: Vec<(f64, model::CodeLocation)> = Vec::new();
    for (name, entry) in &a.children {
        let before_count = per_parent(&b, name, |e| e.count);
        let after_count = per_parent(&a, name, |e| e.count);
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
        let added_nanos = per_parent(&a, name, |e| e.nanos) - per_parent(&b, name, |e| e.nanos);
        if added_nanos > 0.0 {
            growth.push((added_nanos, entry.code.clone()));
        }
        // Code that fails more often per call of the operation than before.
        let added_errors = per_parent(&a, name, |e| e.errors) - per_parent(&b, name, |e| e.errors);
        if let Some(code) = entry.code.clone().filter(|_| added_errors >= 0.02) {
            failing.push((added_errors, code));
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
    failing.sort_by(|x, y| y.0.total_cmp(&x.0));
    code_locations.extend(failing.into_iter().take(2).map(|(_, code)| location(&code, 1.0)));
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
