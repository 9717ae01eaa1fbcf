//! A group of sketches in numbers for the pages: latency quantiles and the error rate, over
//! a service's entry points.

use analysis::compare::WindowStats;
use shapes::{ms_text, percent_text};
use views::SketchRow;

/// Numbers of one group of sketches.
#[derive(Debug, Clone, Default)]
pub(crate) struct Numbers {
    /// Spans, counting each sampled span as the spans it stands for.
    pub(crate) spans: u64,
    /// `spans` in words: "≈12000" when estimated from sampled spans.
    pub(crate) spans_text: String,
    /// Whether the numbers are estimated from sampled spans.
    pub(crate) estimate: bool,
    pub p50: String,
    pub p95: String,
    pub p99: String,
    pub(crate) error_rate: String,
}

impl Numbers {
    pub(super) fn of(stats: &WindowStats) -> Numbers {
        let q = |q: f64| stats.latency.quantile(q).map_or_else(|| "—".into(), |n| ms_text(n / 1e6));
        let estimate = stats.is_estimate();
        Numbers {
            spans: stats.spans,
            spans_text: format!("{}{}", if estimate { "≈" } else { "" }, stats.spans),
            estimate,
            p50: q(0.5),
            p95: q(0.95),
            p99: q(0.99),
            error_rate: if stats.spans == 0 {
                "—".into()
            } else {
                percent_text(stats.errors as f64 / stats.spans as f64)
            },
        }
    }
}

/// The rows of a service's entry points: its server spans (all spans when it has none).
pub(super) fn entry_points<'a>(rows: &[&'a SketchRow]) -> Vec<&'a SketchRow> {
    let servers: Vec<&SketchRow> =
        rows.iter().copied().filter(|r| r.series.span_kind == "server").collect();
    if servers.is_empty() { rows.to_vec() } else { servers }
}

pub(super) fn merged<'a>(rows: impl IntoIterator<Item = &'a SketchRow>) -> WindowStats {
    let mut stats = WindowStats::default();
    for row in rows {
        stats.merge(&row.stats);
    }
    stats
}
