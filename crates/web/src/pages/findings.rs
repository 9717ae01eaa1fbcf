//! The findings list and a finding in full: suspects with their diffs, the before/after
//! distribution, exemplars, the rollback draft and notifications.

use analysis::compare::WindowStats;
use analysis::detect::Baseline;
use askama::Template;
use shapes::query_escape;
use shapes::{CommitJ, FindingJ, RollbackJ, SuspectJ};
use views::Context;

use super::status::StatusBox;
use crate::chart;
use crate::{Layout, Page, PageError, Viewer, escape, render};

/// Diff lines shown per suspect.
const MAX_DIFF_LINES: usize = 160;

#[derive(Template)]
#[template(path = "findings.html")]
struct FindingsPage {
    layout: Layout,
    findings: Vec<FindingJ>,
    filters: Vec<(String, String)>,
    next: Option<String>,
}

pub fn findings_page(
    ctx: &Context,
    viewer: &Viewer,
    params: Vec<(String, String)>,
) -> Result<Page, PageError> {
    let params: Vec<(String, String)> = params.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    let filter = views::findings::parse_filter(params.clone())?;
    let limit = filter.limit;
    let page = {
        let found = views::findings::list(ctx, &viewer.visibility, filter)?;
        let next = (found.len() == limit)
            .then(|| {
                found.last().map(|f| {
                    let mut query: Vec<String> = params
                        .iter()
                        .filter(|(k, _)| k != "next")
                        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
                        .collect();
                    query.push(format!("next={}", f.id));
                    format!("/findings?{}", query.join("&"))
                })
            })
            .flatten();
        FindingsPage {
            layout: Layout::new(viewer, "findings", "Findings"),
            findings: found,
            filters: params,
            next,
        }
    };
    render(&page)
}

impl FindingsPage {
    fn filter(&self, key: &str) -> &str {
        self.filters.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str())
    }
}

/// One line of a diff, with the class that colours it.
pub(crate) struct DiffLine {
    pub(crate) class: &'static str,
    pub(crate) text: String,
}

pub(crate) struct SuspectView {
    pub(crate) rank: usize,
    pub(crate) suspect: SuspectJ,
    pub(crate) diff: Vec<DiffLine>,
    pub(crate) diff_truncated: bool,
    /// The reasons as HTML: escaped, with `quoted` names as code.
    pub(crate) reasons_html: Vec<String>,
}

#[derive(Template)]
#[template(path = "finding.html")]
struct FindingPage {
    layout: Layout,
    f: FindingJ,
    st: StatusBox,
    suspects: Vec<SuspectView>,
    distribution: Option<String>,
    rollback_text: String,
    before_window: String,
    after_window: String,
}

/// A finding in full; `before_window_minutes` is detection's baseline window, charted as
/// the "before" distribution.
pub fn finding_page(
    ctx: &Context,
    viewer: &Viewer,
    id: String,
    before_window_minutes: u32,
) -> Result<Page, PageError> {
    let id: u64 = id.parse().map_err(|_| {
        PageError::not_found(format!("`{}` is not a finding id; ids are numbers", id))
    })?;
    let page = {
        let Some(f) = views::findings::finding(ctx, &viewer.visibility, id)? else {
            return Err(PageError::not_found(format!(
                "there is no finding {id} (or you may not see it)"
            )));
        };
        let suspects = suspect_views(ctx, f.suspects());
        let (distribution, before_window, after_window) =
            match distribution(ctx, viewer, before_window_minutes, &f)? {
                Some((svg, before, after)) => (Some(svg), before, after),
                None => (None, String::new(), String::new()),
            };
        let rollback_text = rollback_text(f.explanation.rollback.as_ref());
        let st = StatusBox::new(
            format!("/api/v1/findings/{id}"),
            &f.status,
            &f.status_by,
            &f.status_note,
            &f.status_changed,
        );
        FindingPage {
            layout: Layout::new(
                viewer,
                "findings",
                format!("Finding {id}: {} {} {}", f.service, f.operation, f.verdict),
            ),
            f,
            st,
            suspects,
            distribution,
            rollback_text,
            before_window,
            after_window,
        }
    };
    render(&page)
}

/// The commit's diff from its repository's mirror, coloured by line.
/// The suspects as the page lists them, the first three with their diffs.
pub(super) fn suspect_views(ctx: &Context, suspects: &[SuspectJ]) -> Vec<SuspectView> {
    suspects
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (diff, diff_truncated) =
                if i < 3 { diff_of(ctx, &s.commit) } else { (Vec::new(), false) };
            let reasons_html = s.reasons.iter().map(|r| code_spans(r)).collect();
            SuspectView { rank: i + 1, suspect: s.clone(), diff, diff_truncated, reasons_html }
        })
        .collect()
}

/// `text` escaped for HTML, with each `backquoted` part as `<code>`: reasons name functions
/// and files that way.
pub(super) fn code_spans(text: &str) -> String {
    let mut html = String::with_capacity(text.len() + 16);
    for (i, part) in text.split('`').enumerate() {
        // Odd parts are between backquotes, unless the last one is left open.
        let closed = i % 2 == 1 && i < text.matches('`').count();
        if closed {
            html.push_str("<code>");
            html.push_str(&escape(part));
            html.push_str("</code>");
        } else {
            if i % 2 == 1 {
                html.push('`');
            }
            html.push_str(&escape(part));
        }
    }
    html
}

/// The rollback draft's commands, then its patch, as one text to copy.
pub(super) fn rollback_text(rollback: Option<&RollbackJ>) -> String {
    rollback
        .map(|r| {
            let mut text = r.commands.join("\n");
            if let Some(patch) = &r.patch {
                text.push_str("\n\n");
                text.push_str(patch);
            }
            text
        })
        .unwrap_or_default()
}

fn diff_of(ctx: &Context, commit: &CommitJ) -> (Vec<DiffLine>, bool) {
    let Some(patch) = views::changes::patch(ctx, &commit.repository, &commit.sha) else {
        return (Vec::new(), false);
    };
    let lines: Vec<DiffLine> = patch
        .lines()
        .filter(|l| !l.starts_with("index "))
        .map(|line| DiffLine {
            class: if line.starts_with("+++")
                || line.starts_with("---")
                || line.starts_with("diff ")
            {
                "file"
            } else if line.starts_with("@@") {
                "hunk"
            } else if line.starts_with('+') {
                "add"
            } else if line.starts_with('-') {
                "del"
            } else {
                "ctx"
            },
            text: line.to_owned(),
        })
        .collect();
    let truncated = lines.len() > MAX_DIFF_LINES;
    (lines.into_iter().take(MAX_DIFF_LINES).collect(), truncated)
}

/// Before and after latency distributions of the finding's operation: the very windows
/// detection compared at the finding's look (so the legend's counts are the "Spans
/// compared"), from the sketches. Returns the chart and the two windows in words; `None` for
/// other metrics.
fn distribution(
    ctx: &Context,
    viewer: &Viewer,
    before_window_minutes: u32,
    f: &FindingJ,
) -> Result<Option<(String, String, String)>, PageError> {
    let Some(deploy) = f.deploy.as_ref().filter(|_| f.metric.starts_with("latency")) else {
        return Ok(None);
    };
    let Some((baseline, before, after)) =
        views::findings::compared_sides(ctx, &viewer.visibility, f.id, before_window_minutes)?
    else {
        return Ok(None);
    };
    let buckets = |s: &WindowStats| -> Vec<(f64, f64, u64)> {
        s.latency.buckets().map(|b| (b.lower_nanos / 1e6, b.upper_nanos / 1e6, b.count)).collect()
    };
    let (before_label, before_window) = match baseline {
        Baseline::WindowBefore => (
            deploy
                .previous
                .as_ref()
                .map_or("before".to_owned(), |p| format!("{} (before)", p.version)),
            format!("{before_window_minutes} minutes before the deploy"),
        ),
        Baseline::OtherVersionsSameMinutes => (
            "other versions (same minutes)".to_owned(),
            "the other versions in the minutes both served".to_owned(),
        ),
    };
    let svg = chart::distribution_chart(
        &format!("Latency of {} before and after the deploy", f.operation),
        &[
            (format!("{before_label}: {} spans", before.spans), "before", buckets(&before)),
            (
                format!("{} (after): {} spans", deploy.version, after.spans),
                "after",
                buckets(&after),
            ),
        ],
    );
    Ok(Some((svg, before_window, format!("{} minutes after it", f.look_minutes.max(1)))))
}

#[cfg(test)]
mod tests {
    use super::code_spans;

    #[test]
    fn backquoted_names_become_code_and_everything_is_escaped() {
        assert_eq!(
            code_spans("changes `apply<T>`, the function & more"),
            "changes <code>apply&lt;T&gt;</code>, the function &amp; more"
        );
        assert_eq!(code_spans("a `b` c `d"), "a <code>b</code> c `d");
        assert_eq!(code_spans("<script>"), "&lt;script&gt;");
        assert_eq!(code_spans(""), "");
    }
}
