//! Two traces side by side (`/compare?a=&b=`): spans aligned by where they sit in their trees
//! (service and operation, the parent's place, the k-th call among siblings), each with its
//! duration in both and the difference, so "what is slower in the new one" is one look.

use std::collections::BTreeMap;

use askama::Template;
use model::TraceId;
use shapes::{SpanJ, ms_text};
use views::Context;

use super::traces::shape;
use crate::{Layout, Page, PageError, Viewer, render};

/// One trace's heading.
pub(crate) struct Side {
    pub(crate) trace_id: String,
    pub(crate) duration: String,
    pub(crate) spans: usize,
    /// Each service's version in this trace.
    versions: BTreeMap<String, String>,
}

/// One aligned row.
pub(crate) struct Row {
    pub(crate) indent: String,
    pub(crate) label: String,
    /// Each side's duration and its link, or `None` when that trace has no such span.
    pub(crate) a: Option<(String, String)>,
    pub(crate) b: Option<(String, String)>,
    /// B − A, signed, and the ratio, when both have it.
    pub(crate) delta: String,
    /// `slower`, `faster` or empty: how the row is marked.
    pub(crate) class: &'static str,
}

#[derive(Template)]
#[template(path = "compare.html")]
struct ComparePage {
    layout: Layout,
    a: Side,
    b: Side,
    rows: Vec<Row>,
    /// The rows that moved most, in words: "storefront GET /cart: +12.3 ms".
    largest: Vec<String>,
    only_a: usize,
    only_b: usize,
    /// Services whose version differs: "checkout 1.1.0 → 1.2.0".
    version_changes: Vec<String>,
}

/// Rows whose difference is under this share of the slower trace are not marked.
const MARKED_SHARE: f64 = 0.02;

pub fn compare_page(
    ctx: &Context,
    viewer: &Viewer,
    params: Vec<(String, String)>,
) -> Result<Page, PageError> {
    let param = |key: &str| {
        params.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim().to_owned()).ok_or_else(|| {
            PageError::bad_request(format!(
                "`{key}` is missing: compare takes two trace ids, `/compare?a=<trace id>&b=<trace id>`"
            ))
        })
    };
    let (a_id, b_id) = (param("a")?, param("b")?);
    let (a, b) = (spans_of(ctx, viewer, "a", &a_id)?, spans_of(ctx, viewer, "b", &b_id)?);
    let (a_shape, b_shape) = (shape(&a), shape(&b));
    // A trace's length, from its shape (already read for the alignment).
    let total_ms = |shape: &[analysis::traces::TraceSpan]| {
        let start = shape.iter().map(|s| s.start_unix_nanos).min().unwrap_or(0);
        let end = shape.iter().map(|s| s.end_unix_nanos).max().unwrap_or(0);
        end.saturating_sub(start) as f64 / 1e6
    };
    let (a_total, b_total) = (total_ms(&a_shape), total_ms(&b_shape));
    let marked_ms = a_total.max(b_total) * MARKED_SHARE;
    let mut rows = Vec::new();
    let mut moved: Vec<(f64, String)> = Vec::new();
    for aligned in analysis::traces::align(&a_shape, &b_shape) {
        let cell = |spans: &[SpanJ], trace: &str, i: Option<usize>| {
            i.map(|i| {
                (
                    ms_text(spans[i].duration_ms),
                    format!("/traces/{trace}#span-{}", spans[i].span_id),
                )
            })
        };
        let (delta, class) = match (aligned.a, aligned.b) {
            (Some(i), Some(j)) => {
                let (x, y) = (a[i].duration_ms, b[j].duration_ms);
                let d = y - x;
                if aligned.depth > 0 {
                    moved.push((d, format!("{}: {}", aligned.label, signed_ms(d))));
                }
                let ratio = if x > 0.0 { format!(" (×{:.2})", y / x) } else { String::new() };
                let class = match d {
                    d if d > marked_ms => "slower",
                    d if d < -marked_ms => "faster",
                    _ => "",
                };
                (format!("{}{ratio}", signed_ms(d)), class)
            }
            (Some(_), None) => ("only in A".to_owned(), "faster"),
            (None, Some(j)) => {
                moved.push((
                    b[j].duration_ms,
                    format!("{}: new in B, {}", aligned.label, ms_text(b[j].duration_ms)),
                ));
                ("only in B".to_owned(), "slower")
            }
            (None, None) => continue,
        };
        rows.push(Row {
            indent: "\u{a0}\u{a0}".repeat(aligned.depth.min(12)),
            label: aligned.label.clone(),
            a: cell(&a, &a_id, aligned.a),
            b: cell(&b, &b_id, aligned.b),
            delta,
            class,
        });
    }
    moved.sort_by(|x, y| y.0.abs().total_cmp(&x.0.abs()));
    let (a_side, b_side) = (side(&a_id, &a, a_total), side(&b_id, &b, b_total));
    let version_changes = a_side
        .versions
        .iter()
        .filter_map(|(service, before)| {
            let after = b_side.versions.get(service)?;
            (after != before).then(|| format!("{service} {before} → {after}"))
        })
        .collect();
    let page = ComparePage {
        layout: Layout::new(viewer, "traces", "Compare two traces"),
        only_a: rows.iter().filter(|r| r.b.is_none()).count(),
        only_b: rows.iter().filter(|r| r.a.is_none()).count(),
        largest: moved
            .into_iter()
            .filter(|(d, _)| d.abs() > marked_ms)
            .take(3)
            .map(|(_, t)| t)
            .collect(),
        a: a_side,
        b: b_side,
        version_changes,
        rows,
    };
    render(&page)
}

/// The spans of one side's trace, or a page error naming the side.
fn spans_of(
    ctx: &Context,
    viewer: &Viewer,
    side: &str,
    text: &str,
) -> Result<Vec<SpanJ>, PageError> {
    let id = TraceId::from_hex(text).map_err(|e| {
        PageError::bad_request(format!(
            "`{side}` = `{text}` is not a trace id ({e}); trace ids are 32 hex digits"
        ))
    })?;
    let spans = views::traces::trace_spans(ctx, &viewer.visibility, &id, false)?;
    if spans.is_empty() {
        return Err(PageError::not_found(format!(
            "no spans are stored for trace `{side}` = {} (or you may not see them)",
            id.to_hex()
        )));
    }
    Ok(spans)
}

fn side(trace_id: &str, spans: &[SpanJ], total_ms: f64) -> Side {
    let versions = spans
        .iter()
        .filter_map(|s| {
            let version = s.detail.as_ref()?.change.version.clone()?;
            Some((s.service.clone(), version))
        })
        .collect();
    Side {
        trace_id: trace_id.to_owned(),
        duration: ms_text(total_ms),
        spans: spans.len(),
        versions,
    }
}

impl Side {
    /// "checkout 1.2.0, storefront 1.0.0".
    pub(crate) fn versions_text(&self) -> String {
        let pairs: Vec<String> = self.versions.iter().map(|(s, v)| format!("{s} {v}")).collect();
        pairs.join(", ")
    }
}

/// "+12.3 ms" or "−4.1 ms".
fn signed_ms(delta_ms: f64) -> String {
    let sign = if delta_ms < 0.0 { "−" } else { "+" };
    format!("{sign}{}", ms_text(delta_ms.abs()))
}
