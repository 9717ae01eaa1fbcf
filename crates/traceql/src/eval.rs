//! A query run over one trace: the spansets it selects, each a list of the trace's spans;
//! and the conditions every match must meet, for a store to skip what cannot match.

use std::collections::{BTreeSet, HashMap};

use model::{Span, SpanId, Value};
use regex::Regex;

use crate::Query;
use crate::ast::{
    Aggregate, AttributeScope, BinaryOp, ChangeField, Field, Intrinsic, Pipeline, SpansetExpr,
    SpansetOp, Stage, Static,
};

/// The values of spanblame's own fields, which only the caller knows (the change graph).
pub trait Extensions {
    /// `field` of the trace's span at `index`; `None` when it has none.
    fn value(&mut self, trace: &Trace<'_>, index: usize, field: ChangeField) -> Option<Static>;
}

/// For a caller with no change graph: spanblame's fields are never set.
pub struct NoExtensions;

impl Extensions for NoExtensions {
    fn value(&mut self, _: &Trace<'_>, _: usize, _: ChangeField) -> Option<Static> {
        None
    }
}

/// One trace as a query reads it: its spans, which of them the caller may see, and its
/// structure. Spans the caller may not see never join a spanset, but they still link their
/// children to their ancestors.
pub struct Trace<'a> {
    pub spans: &'a [Span],
    visible: Vec<bool>,
    parent: Vec<Option<usize>>,
    root: Option<usize>,
    duration_nanos: u64,
}

impl<'a> Trace<'a> {
    /// `visible[i]` says whether the caller may see `spans[i]`; missing entries are hidden.
    pub fn new(spans: &'a [Span], visible: Vec<bool>) -> Trace<'a> {
        let by_id: HashMap<SpanId, usize> =
            spans.iter().enumerate().map(|(i, s)| (s.span_id, i)).collect();
        let parent: Vec<Option<usize>> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| s.parent_span_id.and_then(|p| by_id.get(&p).copied()).filter(|p| *p != i))
            .collect();
        let root = spans
            .iter()
            .position(|s| s.parent_span_id.is_none())
            .or_else(|| (0..spans.len()).min_by_key(|i| spans[*i].start_time_unix_nanos));
        let start = spans.iter().map(|s| s.start_time_unix_nanos).min().unwrap_or(0);
        let end = spans.iter().map(|s| s.end_time_unix_nanos).max().unwrap_or(0);
        Trace { spans, visible, parent, root, duration_nanos: end.saturating_sub(start) }
    }

    pub fn visible(&self, index: usize) -> bool {
        self.visible.get(index).copied().unwrap_or(false)
    }

    /// The span without a parent (else the earliest), which names the trace.
    pub fn root(&self) -> Option<usize> {
        self.root
    }

    pub fn duration_nanos(&self) -> u64 {
        self.duration_nanos
    }

    /// Ancestors of `index`, nearest first; a cycle in bad data ends the walk.
    fn ancestors(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        let mut current = self.parent[index];
        let mut steps = 0;
        std::iter::from_fn(move || {
            let at = current?;
            steps += 1;
            if steps > self.spans.len() {
                return None;
            }
            current = self.parent[at];
            Some(at)
        })
    }

    /// `field`'s value on the span at `index` (`Nil` when the span has none, or when the
    /// caller may not see what it would reveal).
    pub fn value(&self, index: usize, field: &Field, ext: &mut dyn Extensions) -> Static {
        let span = &self.spans[index];
        match field {
            Field::Static(value) => value.clone(),
            Field::Intrinsic(intrinsic) => self.intrinsic(index, *intrinsic),
            Field::Attribute(attribute) => {
                let found = match attribute.scope {
                    AttributeScope::Span => find(&span.attributes, &attribute.name),
                    AttributeScope::Resource => find(&span.resource.attributes, &attribute.name),
                    AttributeScope::Any => span.attribute(&attribute.name),
                };
                found.map_or(Static::Nil, from_value)
            }
            Field::Change(field) => ext.value(self, index, *field).unwrap_or(Static::Nil),
            Field::Not(_) | Field::Binary(..) => Static::Bool(false),
        }
    }

    fn intrinsic(&self, index: usize, intrinsic: Intrinsic) -> Static {
        let span = &self.spans[index];
        match intrinsic {
            Intrinsic::Name => Static::Str(span.name.clone()),
            Intrinsic::Status => Static::Status(span.status.code),
            Intrinsic::StatusMessage => Static::Str(span.status.message.clone()),
            Intrinsic::Kind => Static::Kind(span.kind),
            Intrinsic::Duration => Static::Duration(span.duration_nanos()),
            Intrinsic::SpanId => Static::Str(span.span_id.to_hex()),
            Intrinsic::ParentId => {
                span.parent_span_id.map_or(Static::Nil, |p| Static::Str(p.to_hex()))
            }
            Intrinsic::TraceId => Static::Str(span.trace_id.to_hex()),
            Intrinsic::TraceDuration => Static::Duration(self.duration_nanos),
            // Another team's root is named by its service only, as the trace views show it.
            Intrinsic::RootName => match self.root {
                Some(root) if self.visible(root) => Static::Str(self.spans[root].name.clone()),
                _ => Static::Nil,
            },
            Intrinsic::RootServiceName => self.root.map_or(Static::Nil, |root| {
                Static::Str(self.spans[root].service_name().to_owned())
            }),
        }
    }
}

fn find<'v>(attributes: &'v [model::KeyValue], key: &str) -> Option<&'v Value> {
    attributes.iter().find(|kv| kv.key == key).map(|kv| &kv.value)
}

fn from_value(value: &Value) -> Static {
    match value {
        Value::String(s) => Static::Str(s.clone()),
        Value::Bool(b) => Static::Bool(*b),
        Value::Int(n) => Static::Int(*n),
        Value::Double(x) => Static::Float(*x),
        _ => Static::Nil,
    }
}

/// Spans a query selected in one trace, as one group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spanset {
    /// Indexes into the trace's spans, ascending.
    pub spans: Vec<usize>,
    /// The `by(…)` groups this spanset is, as (field, value).
    pub by: Vec<(String, Static)>,
    /// Fields `select(…)` asked to show on the spans.
    pub selected: Vec<Field>,
}

/// The compiled regular expressions of a query, by pattern.
#[derive(Debug, Clone, Default)]
pub(crate) struct Regexes(HashMap<String, Regex>);

impl Regexes {
    pub(crate) fn of(pipeline: &Pipeline) -> Regexes {
        let mut regexes = Regexes::default();
        let mut visit = |field: &Field| {
            walk_fields(field, &mut |f| {
                if let Field::Binary(_, BinaryOp::Match | BinaryOp::NotMatch, right) = f
                    && let Field::Static(Static::Str(pattern)) = &**right
                    // Whole-text matches; the parser checked that the pattern compiles.
                    && let Ok(regex) = Regex::new(&format!("^(?:{pattern})$"))
                {
                    regexes.0.insert(pattern.clone(), regex);
                }
            })
        };
        pipeline_fields(pipeline, &mut visit);
        regexes
    }
}

fn walk_fields(field: &Field, visit: &mut dyn FnMut(&Field)) {
    visit(field);
    match field {
        Field::Binary(left, _, right) => {
            walk_fields(left, visit);
            walk_fields(right, visit);
        }
        Field::Not(inner) => walk_fields(inner, visit),
        _ => {}
    }
}

/// Every field expression of a pipeline (filters, aggregates, select, by), outermost first.
fn pipeline_fields(pipeline: &Pipeline, visit: &mut dyn FnMut(&Field)) {
    spanset_fields(&pipeline.first, visit);
    for stage in &pipeline.stages {
        match stage {
            Stage::Filter(Some(field)) | Stage::By(field) => visit(field),
            Stage::Aggregate { of: Some(field), .. } => visit(field),
            Stage::Select(fields) => fields.iter().for_each(&mut *visit),
            _ => {}
        }
    }
}

fn spanset_fields(expr: &SpansetExpr, visit: &mut dyn FnMut(&Field)) {
    match expr {
        SpansetExpr::Filter(Some(field)) => visit(field),
        SpansetExpr::Filter(None) => {}
        SpansetExpr::Binary(left, _, right) => {
            spanset_fields(left, visit);
            spanset_fields(right, visit);
        }
        SpansetExpr::Pipeline(pipeline) => pipeline_fields(pipeline, visit),
    }
}

/// A condition every span a query selects first must meet: `field op value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: Field,
    pub op: BinaryOp,
    pub value: Static,
}

impl Query {
    /// The spansets this query selects in `trace` (none: the trace does not match).
    pub fn evaluate(&self, trace: &Trace<'_>, ext: &mut dyn Extensions) -> Vec<Spanset> {
        let mut run = Run { query: self, trace, ext };
        run.pipeline(&self.pipeline)
    }

    /// Conditions some span of every matching trace meets, as `field op value` with the
    /// field an intrinsic or attribute: a store may skip traces with no such span. Empty when
    /// nothing can be said (say, `{ a } || { b }`).
    pub fn required(&self) -> Vec<Condition> {
        required_of(&self.pipeline.first)
    }

    /// Whether the query needs a trace's other spans to judge one: a structural operator, a
    /// parenthesised pipeline, or a trace-level intrinsic (`rootName`, `rootServiceName`,
    /// `traceDuration`). When not, it can run on just the spans a store's search matched.
    pub fn needs_whole_trace(&self) -> bool {
        if !matches!(self.pipeline.first, SpansetExpr::Filter(_)) {
            return true;
        }
        let mut trace_level = false;
        pipeline_fields(&self.pipeline, &mut |field| {
            walk_fields(field, &mut |f| {
                trace_level |= matches!(
                    f,
                    Field::Intrinsic(
                        Intrinsic::RootName | Intrinsic::RootServiceName | Intrinsic::TraceDuration
                    )
                );
            })
        });
        trace_level
    }

    /// The attributes, intrinsics and spanblame fields the query names, to show on the spans
    /// it selects (as Tempo shows what a query matched on), without repeats.
    pub fn named_fields(&self) -> Vec<Field> {
        let mut named: Vec<Field> = Vec::new();
        pipeline_fields(&self.pipeline, &mut |field| {
            walk_fields(field, &mut |f| {
                if matches!(f, Field::Attribute(_) | Field::Intrinsic(_) | Field::Change(_))
                    && !named.contains(f)
                {
                    named.push(f.clone());
                }
            })
        });
        named
    }
}

fn required_of(expr: &SpansetExpr) -> Vec<Condition> {
    match expr {
        SpansetExpr::Filter(None) => Vec::new(),
        SpansetExpr::Filter(Some(field)) => {
            let mut conditions = Vec::new();
            conjuncts(field, &mut conditions);
            conditions
        }
        SpansetExpr::Binary(_, SpansetOp::Or, _) => Vec::new(),
        // Both sides must have spans: the side that says more is the better filter.
        SpansetExpr::Binary(left, _, right) => {
            let (left, right) = (required_of(left), required_of(right));
            if right.len() > left.len() { right } else { left }
        }
        SpansetExpr::Pipeline(pipeline) => required_of(&pipeline.first),
    }
}

fn conjuncts(field: &Field, out: &mut Vec<Condition>) {
    match field {
        Field::Binary(left, BinaryOp::And, right) => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        Field::Binary(left, op, right) if op.is_comparison() => {
            if let (Field::Intrinsic(_) | Field::Attribute(_), Field::Static(value)) =
                (&**left, &**right)
                && *value != Static::Nil
            {
                out.push(Condition { field: (**left).clone(), op: *op, value: value.clone() });
            }
        }
        _ => {}
    }
}

struct Run<'q, 't, 'e> {
    query: &'q Query,
    trace: &'t Trace<'t>,
    ext: &'e mut dyn Extensions,
}

impl Run<'_, '_, '_> {
    fn pipeline(&mut self, pipeline: &Pipeline) -> Vec<Spanset> {
        let mut sets = self.spanset(&pipeline.first);
        for stage in &pipeline.stages {
            if sets.is_empty() {
                break;
            }
            sets = self.stage(stage, sets);
        }
        sets
    }

    fn spanset(&mut self, expr: &SpansetExpr) -> Vec<Spanset> {
        let spans: Vec<usize> = match expr {
            SpansetExpr::Filter(condition) => self.matching(0..self.trace.spans.len(), condition),
            SpansetExpr::Pipeline(pipeline) => return self.pipeline(pipeline),
            SpansetExpr::Binary(left, op, right) => {
                let left = union(self.spanset(left));
                if left.is_empty() && *op != SpansetOp::Or {
                    return Vec::new();
                }
                let right = union(self.spanset(right));
                self.join(&left, *op, &right)
            }
        };
        if spans.is_empty() { Vec::new() } else { vec![Spanset { spans, ..Spanset::default() }] }
    }

    fn join(&self, left: &BTreeSet<usize>, op: SpansetOp, right: &BTreeSet<usize>) -> Vec<usize> {
        let trace = self.trace;
        let parent_in = |r: usize| trace.parent[r].is_some_and(|p| left.contains(&p));
        match op {
            SpansetOp::And if right.is_empty() => Vec::new(),
            SpansetOp::And | SpansetOp::Or => left.union(right).copied().collect(),
            SpansetOp::Child => right.iter().copied().filter(|r| parent_in(*r)).collect(),
            SpansetOp::Descendant => right
                .iter()
                .copied()
                .filter(|r| trace.ancestors(*r).any(|a| left.contains(&a)))
                .collect(),
            SpansetOp::Parent => {
                let parents: BTreeSet<usize> =
                    left.iter().filter_map(|l| trace.parent[*l]).collect();
                right.intersection(&parents).copied().collect()
            }
            SpansetOp::Ancestor => {
                let ancestors: BTreeSet<usize> =
                    left.iter().flat_map(|l| trace.ancestors(*l)).collect();
                right.intersection(&ancestors).copied().collect()
            }
            SpansetOp::Sibling => right
                .iter()
                .copied()
                .filter(|r| {
                    let parent = trace.parent[*r];
                    parent.is_some() && left.iter().any(|l| l != r && trace.parent[*l] == parent)
                })
                .collect(),
        }
    }

    fn matching(
        &mut self,
        spans: impl IntoIterator<Item = usize>,
        condition: &Option<Field>,
    ) -> Vec<usize> {
        spans
            .into_iter()
            .filter(|i| self.trace.visible(*i))
            .filter(|i| condition.as_ref().is_none_or(|c| self.holds(*i, c)))
            .collect()
    }

    fn stage(&mut self, stage: &Stage, sets: Vec<Spanset>) -> Vec<Spanset> {
        match stage {
            Stage::Filter(condition) => sets
                .into_iter()
                .filter_map(|mut set| {
                    set.spans = self.matching(set.spans.clone(), condition);
                    (!set.spans.is_empty()).then_some(set)
                })
                .collect(),
            Stage::Aggregate { function, of, op, value } => sets
                .into_iter()
                .filter(|set| {
                    let aggregate = self.aggregate(*function, of.as_ref(), &set.spans);
                    aggregate.is_some_and(|a| compare(&a, *op, value, &self.query.regexes))
                })
                .collect(),
            Stage::Select(fields) => sets
                .into_iter()
                .map(|mut set| {
                    set.selected.extend(fields.iter().cloned());
                    set
                })
                .collect(),
            Stage::By(field) => {
                let label = field.to_string();
                let mut out: Vec<Spanset> = Vec::new();
                for set in sets {
                    let mut groups: Vec<(Static, Vec<usize>)> = Vec::new();
                    for &i in &set.spans {
                        let value = self.value(i, field);
                        if value == Static::Nil {
                            continue;
                        }
                        match groups.iter_mut().find(|(v, _)| *v == value) {
                            Some((_, spans)) => spans.push(i),
                            None => groups.push((value, vec![i])),
                        }
                    }
                    for (value, spans) in groups {
                        let mut by = set.by.clone();
                        by.push((label.clone(), value));
                        out.push(Spanset { spans, by, selected: set.selected.clone() });
                    }
                }
                out
            }
            Stage::Coalesce => {
                let selected = sets.iter().flat_map(|s| s.selected.clone()).collect();
                vec![Spanset { spans: union(sets).into_iter().collect(), by: Vec::new(), selected }]
            }
        }
    }

    fn aggregate(
        &mut self,
        function: Aggregate,
        of: Option<&Field>,
        spans: &[usize],
    ) -> Option<Static> {
        let Some(field) = of else {
            return Some(Static::Int(spans.len() as i64));
        };
        // Durations stay durations; integers and floats are summed as floats.
        let mut durations = true;
        let mut values = Vec::new();
        for &i in spans {
            match self.value(i, field) {
                Static::Duration(nanos) => values.push(nanos as f64),
                Static::Int(n) => {
                    durations = false;
                    values.push(n as f64)
                }
                Static::Float(x) => {
                    durations = false;
                    values.push(x)
                }
                _ => {}
            }
        }
        if values.is_empty() {
            return None;
        }
        let result = match function {
            Aggregate::Count => values.len() as f64,
            Aggregate::Sum => values.iter().sum(),
            Aggregate::Avg => values.iter().sum::<f64>() / values.len() as f64,
            Aggregate::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
            Aggregate::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        };
        Some(if durations {
            Static::Duration(result.round() as u64)
        } else {
            Static::Float(result)
        })
    }

    fn value(&mut self, index: usize, field: &Field) -> Static {
        match field {
            Field::Not(_) | Field::Binary(..) => Static::Bool(self.holds(index, field)),
            _ => self.trace.value(index, field, self.ext),
        }
    }

    /// Whether a condition holds on a span: a comparison or logic by its value; a bare
    /// boolean by itself; any other bare field when the span has it.
    fn holds(&mut self, index: usize, field: &Field) -> bool {
        match field {
            Field::Binary(left, BinaryOp::And, right) => {
                self.holds(index, left) && self.holds(index, right)
            }
            Field::Binary(left, BinaryOp::Or, right) => {
                self.holds(index, left) || self.holds(index, right)
            }
            // `= nil` asks for a missing value, `!= nil` for a present one.
            Field::Binary(field, op @ (BinaryOp::Eq | BinaryOp::Ne), nil)
            | Field::Binary(nil, op @ (BinaryOp::Eq | BinaryOp::Ne), field)
                if **nil == Field::Static(Static::Nil) =>
            {
                (self.value(index, field) == Static::Nil) == (*op == BinaryOp::Eq)
            }
            Field::Binary(left, op, right) => {
                let (left, right) = (self.value(index, left), self.value(index, right));
                compare(&left, *op, &right, &self.query.regexes)
            }
            Field::Not(inner) => !self.holds(index, inner),
            other => match self.value(index, other) {
                Static::Bool(b) => b,
                Static::Nil => false,
                _ => true,
            },
        }
    }
}

fn union(sets: Vec<Spanset>) -> BTreeSet<usize> {
    sets.into_iter().flat_map(|s| s.spans).collect()
}

/// `left op right` by TraceQL's rules: values of different types are never equal nor
/// unequal (integers and floats compare as numbers), and a missing value (`Nil`) neither.
fn compare(left: &Static, op: BinaryOp, right: &Static, regexes: &Regexes) -> bool {
    use std::cmp::Ordering;
    if matches!(op, BinaryOp::Match | BinaryOp::NotMatch) {
        let (Static::Str(text), Static::Str(pattern)) = (left, right) else { return false };
        let Some(regex) = regexes.0.get(pattern) else { return false };
        return regex.is_match(text) == (op == BinaryOp::Match);
    }
    let ordering: Option<Ordering> = match (left, right) {
        (Static::Str(a), Static::Str(b)) => Some(a.cmp(b)),
        (Static::Int(a), Static::Int(b)) => Some(a.cmp(b)),
        (Static::Int(a), Static::Float(b)) => (*a as f64).partial_cmp(b),
        (Static::Float(a), Static::Int(b)) => a.partial_cmp(&(*b as f64)),
        (Static::Float(a), Static::Float(b)) => a.partial_cmp(b),
        (Static::Duration(a), Static::Duration(b)) => Some(a.cmp(b)),
        (Static::Bool(a), Static::Bool(b)) if matches!(op, BinaryOp::Eq | BinaryOp::Ne) => {
            Some(a.cmp(b))
        }
        (Static::Status(a), Static::Status(b)) if matches!(op, BinaryOp::Eq | BinaryOp::Ne) => {
            Some((*a as u8).cmp(&(*b as u8)))
        }
        (Static::Kind(a), Static::Kind(b)) if matches!(op, BinaryOp::Eq | BinaryOp::Ne) => {
            Some((*a as u8).cmp(&(*b as u8)))
        }
        _ => None,
    };
    let Some(ordering) = ordering else { return false };
    match op {
        BinaryOp::Eq => ordering == Ordering::Equal,
        BinaryOp::Ne => ordering != Ordering::Equal,
        BinaryOp::Gt => ordering == Ordering::Greater,
        BinaryOp::Ge => ordering != Ordering::Less,
        BinaryOp::Lt => ordering == Ordering::Less,
        BinaryOp::Le => ordering != Ordering::Greater,
        _ => false,
    }
}
