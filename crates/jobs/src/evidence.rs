//! The spans behind a regressed finding: a bounded sample of each side's stored traces (read
//! once per finding; detection itself never reads raw spans), and its exemplars. What the
//! sample shows is worked out by `analysis::evidence`.

use std::collections::HashSet;

use analysis::evidence::Sample;
use analysis::suspects::Evidence;
use model::{Deploy, Span};
use shapes::{ChildChangeJ, CodeLocationJ, EvidenceJ, ExemplarJ, ExemplarSideJ, SlowAttributeJ};
use store::{SpanQuery, SpanStore, StoreError};
use views::rfc3339;

/// Matching spans read per side; traces opened per side for structure.
const SAMPLE_SPANS: usize = 400;
const SAMPLE_TRACES: usize = 40;

/// Which spans one side is.
pub struct SideQuery<'a> {
    pub deploy: &'a Deploy,
    pub operation: &'a str,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// The deployed version's spans (after), or every other version's (before).
    pub deployed: bool,
}

/// Up to [`SAMPLE_SPANS`] of the side's newest spans, sorted slowest first, with the whole
/// traces of up to [`SAMPLE_TRACES`] of them: failing ones first, then spread over durations.
pub fn read_side(store: &SpanStore, query: &SideQuery<'_>) -> Result<Sample, StoreError> {
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
    // Failing spans' traces first (up to half), then a spread over the durations.
    let step = (spans.len() / SAMPLE_TRACES).max(1);
    let failing = spans.iter().filter(|s| s.is_error()).take(SAMPLE_TRACES / 2);
    let spread = spans.iter().step_by(step);
    let mut traces = Vec::new();
    let mut opened = HashSet::new();
    for span in failing.chain(spread) {
        if traces.len() >= SAMPLE_TRACES {
            break;
        }
        if opened.insert(span.trace_id) {
            traces.push(store.trace(&span.trace_id)?);
        }
    }
    Ok(Sample { spans, traces })
}

/// The slowest and a typical (median) span's trace, as API links.
pub fn exemplars(side: &Sample) -> ExemplarSideJ {
    let view = |s: &Span| ExemplarJ {
        trace_id: s.trace_id.to_string(),
        span_id: s.span_id.to_string(),
        duration_ms: s.duration_nanos() as f64 / 1e6,
        start: rfc3339(s.start_time_unix_nanos),
        version: s.version().map(str::to_owned),
        url: format!("/api/v1/traces/{}", s.trace_id),
    };
    ExemplarSideJ {
        slowest: side.spans.first().map(view),
        typical: side.spans.get(side.spans.len() / 2).map(view),
        sampled_spans: side.spans.len(),
    }
}

/// What the two samples show, as the finding keeps it.
pub fn view(evidence: &Evidence) -> EvidenceJ {
    EvidenceJ {
        code_locations: evidence
            .code_locations
            .iter()
            .map(|l| CodeLocationJ {
                function: l.function.clone(),
                file: l.file.clone(),
                line: l.line.map(i64::from),
                share: l.share,
            })
            .collect(),
        child_changes: evidence
            .child_changes
            .iter()
            .map(|c| ChildChangeJ {
                name: c.name.clone(),
                before_per_parent: c.before_per_parent,
                after_per_parent: c.after_per_parent,
            })
            .collect(),
        slow_attributes: evidence
            .slow_attributes
            .iter()
            .map(|a| SlowAttributeJ {
                key: a.key.clone(),
                value: a.value.clone(),
                slow_share: a.slow_share,
                fast_share: a.fast_share,
            })
            .collect(),
    }
}
