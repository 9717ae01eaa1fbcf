//! A trace as a waterfall, and the trace search form.

use std::collections::BTreeMap;

use analysis::traces::{Segment, TraceSpan};
use askama::Template;
use model::TraceId;
use serde_json::Value as Json_;
use shapes::{
    ChangeJ, EventJ, MatchedSpanJ, RootJ, SpanJ, WholeTraceJ, ms_text, short_time, unix_secs,
};
use views::Context;

use crate::chart;
use crate::{Layout, Page, PageError, Viewer, render};

const NANOS_PER_MINUTE: u64 = 60_000_000_000;

pub(crate) struct SpanRow {
    pub(crate) span_id: String,
    pub(crate) depth: usize,
    pub(crate) indent: String,
    pub(crate) redacted: bool,
    pub(crate) service: String,
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) environment: String,
    pub(crate) start: String,
    pub(crate) duration: String,
    pub(crate) error: bool,
    pub(crate) status_message: String,
    /// The bar's offset and width on a 0–1000 scale of the whole trace.
    pub(crate) bar_x: String,
    pub(crate) bar_width: String,
    pub(crate) change: Option<ChangeJ>,
    pub(crate) code: String,
    pub(crate) attributes: Vec<(String, String)>,
    pub(crate) resource: Vec<(String, String)>,
    pub(crate) events: Vec<EventRow>,
    /// Links to other spans: (the page's link, "trace … span …", attributes in words).
    pub(crate) links: Vec<(String, String, String)>,
    /// The service's colour: its place among the trace's services (classes `svc-0`…`svc-7`).
    pub(crate) colour: usize,
    /// Stretches of the critical path in this span's own work, as (offset, width) on the
    /// bar's 0–1000 scale, and their total.
    pub(crate) critical: Vec<(String, String)>,
    pub(crate) critical_ms: Option<String>,
}

/// A span event as the page shows it; an exception with its message and stack trace.
pub(crate) struct EventRow {
    pub(crate) when: String,
    pub(crate) name: String,
    /// `exception.type: exception.message` for an exception, else empty.
    pub(crate) summary: String,
    pub(crate) stacktrace: Option<String>,
    /// The other attributes.
    pub(crate) attributes: Vec<(String, String)>,
}

/// Colours the waterfall cycles through (`svc-0`…`svc-7` in the stylesheet).
const SERVICE_COLOURS: usize = 8;

#[derive(Template)]
#[template(path = "trace.html")]
struct TracePage {
    layout: Layout,
    trace_id: String,
    rows: Vec<SpanRow>,
    duration: String,
    services: String,
    redacted: usize,
    /// Each service with its colour class, for the legend.
    legend: Vec<(String, usize)>,
    /// Five time-axis labels, from the trace's start to its end.
    ticks: Vec<String>,
}

pub fn trace_page(ctx: &Context, viewer: &Viewer, id: String) -> Result<Page, PageError> {
    let trace_id = id;
    let id = TraceId::from_hex(&trace_id).map_err(|e| {
        PageError::not_found(format!(
            "`{trace_id}` is not a trace id ({e}); trace ids are 32 hex digits"
        ))
    })?;
    let page = {
        let spans = views::traces::trace_spans(ctx, &viewer.visibility, &id, true)?;
        if spans.is_empty() {
            return Err(PageError::not_found(format!(
                "no spans are stored for trace {} (or you may not see them)",
                id.to_hex()
            )));
        }
        let start = |s: &SpanJ| s.start_time_unix_nanos.parse::<u64>().unwrap_or(0);
        let first_start = spans.iter().map(start).min().unwrap_or(0);
        let last_end =
            spans.iter().map(|s| start(s) + (s.duration_ms * 1e6) as u64).max().unwrap_or(0);
        let total_ms = last_end.saturating_sub(first_start) as f64 / 1e6;
        let rows = waterfall(spans);
        let mut services: Vec<&str> = rows.iter().map(|r| r.service.as_str()).collect();
        services.sort_unstable();
        services.dedup();
        let mut legend: Vec<(String, usize)> =
            rows.iter().map(|r| (r.service.clone(), r.colour)).collect();
        legend.sort();
        legend.dedup();
        TracePage {
            layout: Layout::new(viewer, "traces", format!("Trace {}", id.to_hex())),
            trace_id: id.to_hex(),
            legend,
            ticks: ticks(total_ms),
            duration: rows.first().map(|r| r.duration.clone()).unwrap_or_default(),
            services: services.join(", "),
            redacted: rows.iter().filter(|r| r.redacted).count(),
            rows,
        }
    };
    render(&page)
}

/// Five labels from 0 to the trace's duration, for the time axis.
fn ticks(total_ms: f64) -> Vec<String> {
    (0..5).map(|i| ms_text(total_ms * f64::from(i) / 4.0)).collect()
}

fn event_row(event: &EventJ) -> EventRow {
    let text = |key: &str| event.attributes.get(key).and_then(Json_::as_str).map(str::to_owned);
    let summary = match (text("exception.type"), text("exception.message")) {
        (Some(kind), Some(message)) => format!("{kind}: {message}"),
        (Some(kind), None) => kind,
        (None, Some(message)) => message,
        (None, None) => String::new(),
    };
    let shown_apart = ["exception.type", "exception.message", "exception.stacktrace"];
    EventRow {
        when: short_time(&event.time),
        name: event.name.clone(),
        summary,
        stacktrace: text("exception.stacktrace"),
        attributes: event
            .attributes
            .iter()
            .filter(|(k, _)| !shown_apart.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect(),
    }
}

/// Spans as the analysis reads a trace's shape, labelled by service and operation, in the
/// same order.
pub(crate) fn shape(spans: &[SpanJ]) -> Vec<TraceSpan> {
    let index: std::collections::HashMap<&str, usize> =
        spans.iter().enumerate().map(|(i, s)| (s.span_id.as_str(), i)).collect();
    spans
        .iter()
        .map(|s| {
            let start = s.start_time_unix_nanos.parse::<u64>().unwrap_or(0);
            TraceSpan {
                parent: s.parent_span_id.as_deref().and_then(|p| index.get(p).copied()),
                start_unix_nanos: start,
                end_unix_nanos: start + (s.duration_ms * 1e6) as u64,
                label: format!("{} {}", s.service, s.detail().name),
            }
        })
        .collect()
}

/// Spans in tree order (parents before children, siblings by start), with their bars and
/// the critical path.
fn waterfall(spans: Vec<SpanJ>) -> Vec<SpanRow> {
    let mut critical: Vec<Vec<Segment>> = vec![Vec::new(); spans.len()];
    for segment in analysis::traces::critical_path(&shape(&spans)) {
        critical[segment.span].push(segment);
    }
    let start = |s: &SpanJ| s.start_time_unix_nanos.parse::<u64>().unwrap_or(0);
    let trace_start = spans.iter().map(start).min().unwrap_or(0);
    let trace_end = spans
        .iter()
        .map(|s| start(s) + (s.duration_ms * 1e6) as u64)
        .max()
        .unwrap_or(trace_start)
        .max(trace_start + 1);
    let ids: std::collections::HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: BTreeMap<Option<String>, Vec<usize>> = BTreeMap::new();
    for (i, span) in spans.iter().enumerate() {
        // A span whose parent is missing is shown as a root.
        let parent = span.parent_span_id.clone().filter(|p| ids.contains(p.as_str()));
        children.entry(parent).or_default().push(i);
    }
    for list in children.values_mut() {
        list.sort_by_key(|&i| start(&spans[i]));
    }
    let mut order = Vec::new();
    let mut stack: Vec<(usize, usize)> =
        children.get(&None).into_iter().flatten().rev().map(|&i| (i, 0)).collect();
    while let Some((i, depth)) = stack.pop() {
        order.push((i, depth));
        if let Some(kids) = children.get(&Some(spans[i].span_id.clone())) {
            stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
        }
    }
    let total = (trace_end - trace_start) as f64;
    let mut services: Vec<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    services.sort_unstable();
    services.dedup();
    let colours: BTreeMap<String, usize> =
        services.iter().enumerate().map(|(i, s)| (s.to_string(), i % SERVICE_COLOURS)).collect();
    let mut slots: Vec<Option<SpanJ>> = spans.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|(i, depth)| {
            let span = slots[i].take()?;
            let offset = (start(&span) - trace_start) as f64 / total * 1000.0;
            let on_path = &critical[i];
            let path_nanos: u64 =
                on_path.iter().map(|s| s.end_unix_nanos - s.start_unix_nanos).sum();
            let width = (span.duration_ms * 1e6 / total * 1000.0).max(2.0);
            let text = |map: &serde_json::Map<String, Json_>| -> Vec<(String, String)> {
                map.iter()
                    .map(|(k, v)| {
                        (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    })
                    .collect()
            };
            let detail = span.detail();
            let code = {
                let function = detail.code.function_name.as_deref();
                let file = detail.code.file_path.as_deref();
                match (function, file, detail.code.line_number) {
                    (Some(f), Some(p), Some(l)) => format!("{f} ({p}:{l})"),
                    (Some(f), Some(p), None) => format!("{f} ({p})"),
                    (Some(f), None, _) => f.to_owned(),
                    (None, Some(p), Some(l)) => format!("{p}:{l}"),
                    (None, Some(p), None) => p.to_owned(),
                    _ => String::new(),
                }
            };
            Some(SpanRow {
                depth,
                indent: "\u{a0}\u{a0}".repeat(depth.min(12)),
                redacted: span.redacted,
                service: span.service.clone(),
                name: if span.redacted {
                    "redacted: another team's span".into()
                } else {
                    detail.name.clone()
                },
                kind: detail.kind.clone(),
                environment: detail.environment.clone().unwrap_or_default(),
                start: short_time(&span.start_time),
                duration: ms_text(span.duration_ms),
                error: span.status.code == "error",
                status_message: span.status.message.clone().unwrap_or_default(),
                bar_x: format!("{offset:.1}"),
                bar_width: format!("{:.1}", width.min(1000.0 - offset).max(1.0)),
                change: Some(detail.change.clone())
                    .filter(|c| c.version.is_some() || c.commit.is_some() || c.owner.is_some()),
                code,
                attributes: text(&detail.attributes),
                resource: text(&detail.resource.attributes),
                events: detail.events.iter().map(event_row).collect(),
                links: detail
                    .links
                    .iter()
                    .map(|l| {
                        let attributes: Vec<String> = l
                            .attributes
                            .iter()
                            .map(|(k, v)| {
                                format!(
                                    "{k}={}",
                                    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                                )
                            })
                            .collect();
                        (
                            format!("/traces/{}#span-{}", l.trace_id, l.span_id),
                            format!("trace {} span {}", l.trace_id, l.span_id),
                            attributes.join(", "),
                        )
                    })
                    .collect(),
                colour: colours.get(&span.service).copied().unwrap_or(0),
                critical: on_path
                    .iter()
                    .map(|s| {
                        let x = (s.start_unix_nanos - trace_start) as f64 / total * 1000.0;
                        let width = (s.end_unix_nanos - s.start_unix_nanos) as f64 / total * 1000.0;
                        (format!("{x:.1}"), format!("{:.1}", width.max(1.0)))
                    })
                    .collect(),
                critical_ms: (path_nanos > 0).then(|| ms_text(path_nanos as f64 / 1e6)),
                span_id: span.span_id,
            })
        })
        .collect()
}

pub(crate) struct TraceResult {
    pub(crate) trace_id: String,
    /// When the trace started.
    pub(crate) when: String,
    /// The root span's service and operation ("(redacted)" for another team's root).
    pub(crate) service: String,
    pub(crate) operation: String,
    /// The whole trace's duration.
    pub(crate) duration: String,
    pub(crate) spans: u64,
    pub(crate) services: u64,
    pub(crate) errors: u64,
    pub(crate) matched: usize,
    /// The first matching span, when it is not the root: "inventory /reserve 7.94 ms".
    pub(crate) first_match: String,
    /// For the scatter plot and sorting: start (Unix seconds) and duration.
    pub(crate) start_secs: f64,
    pub(crate) duration_ms: f64,
}

#[derive(Template)]
#[template(path = "traces.html")]
struct SearchPage {
    layout: Layout,
    form: BTreeMap<String, String>,
    results: Vec<TraceResult>,
    error: Option<String>,
    services: Vec<String>,
    /// Duration over time, one dot per trace found.
    scatter: Option<String>,
}

impl SearchPage {
    fn field(&self, key: &str) -> &str {
        self.form.get(key).map_or("", String::as_str)
    }

    fn selected(&self, key: &str, value: &str) -> bool {
        self.field(key) == value
    }
}

const LOOKBACKS: [(&str, u64); 5] =
    [("15m", 15), ("1h", 60), ("6h", 360), ("24h", 1_440), ("7d", 10_080)];

pub fn search_page(
    ctx: &Context,
    viewer: &Viewer,
    params: Vec<(String, String)>,
) -> Result<Page, PageError> {
    let form: BTreeMap<String, String> = params
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k, v.trim().to_owned()))
        .collect();
    let now = ctx.clock.now_unix_nanos();
    let query = search_query(&form, now);
    let page = {
        let services: Vec<String> =
            views::traces::services(ctx, &viewer.visibility)?.into_iter().map(|s| s.name).collect();
        let layout = Layout::new(viewer, "traces", "Search traces");
        let query = match query {
            Ok(query) => query,
            Err(message) => {
                let mut page = render(&SearchPage {
                    layout,
                    form,
                    results: Vec::new(),
                    error: Some(message),
                    services,
                    scatter: None,
                })?;
                page.status = 400;
                return Ok(page);
            }
        };
        let results = views::traces::search(ctx, &viewer.visibility, query)?
            .into_iter()
            .map(|m| {
                let first = m.matched_spans.first();
                let text = |f: fn(&MatchedSpanJ) -> &str| first.map(f).unwrap_or_default();
                let first_ms = first.map_or(0.0, |f| f.duration_ms);
                let first_text = format!(
                    "{} {} {}",
                    text(|f| &f.service),
                    text(|f| &f.operation),
                    ms_text(first_ms)
                );
                let whole = m.whole.as_ref();
                let root = whole.map(|w| &w.root);
                let same_as_root = root.is_some_and(|r| {
                    r.operation.as_deref() == first.map(|f| f.operation.as_str())
                        && Some(r.service.as_str()) == first.map(|f| f.service.as_str())
                });
                let start = whole.map_or(&m.newest_match_time, |w| &w.start_time);
                let duration_ms = whole.map_or(first_ms, |w| w.duration_ms);
                let count = |f: fn(&WholeTraceJ) -> usize| whole.map_or(0, f) as u64;
                TraceResult {
                    when: short_time(start),
                    service: match root {
                        Some(root) => root.service.clone(),
                        None => text(|f| &f.service).to_owned(),
                    },
                    operation: match root {
                        Some(RootJ { operation: Some(operation), .. }) => operation.clone(),
                        Some(_) => "(redacted)".to_owned(),
                        None => text(|f| &f.operation).to_owned(),
                    },
                    duration: ms_text(duration_ms),
                    spans: count(|w| w.span_count),
                    services: count(|w| w.service_count),
                    errors: count(|w| w.error_count),
                    matched: m.matched_spans.len(),
                    first_match: if same_as_root { String::new() } else { first_text },
                    start_secs: unix_secs(start).unwrap_or(0.0),
                    duration_ms,
                    trace_id: m.trace_id,
                }
            })
            .collect();
        let mut results: Vec<TraceResult> = results;
        if form.get("sort").map(String::as_str) == Some("duration") {
            results.sort_by(|a, b| b.duration_ms.total_cmp(&a.duration_ms));
        }
        let dots: Vec<chart::Dot> = results
            .iter()
            .map(|r| chart::Dot {
                x: r.start_secs,
                y_ms: r.duration_ms,
                href: format!("/traces/{}", r.trace_id),
                label: format!("{} {}: {}, {}", r.service, r.operation, r.duration, r.when),
                error: r.errors > 0,
            })
            .collect();
        let scatter = (!dots.is_empty()).then(|| chart::scatter_chart("Traces found", &dots));
        SearchPage { layout, form, results, error: None, services, scatter }
    };
    render(&page)
}

/// The API's search from the form: `last` becomes `start`, `attributes` lines become
/// `attr.<key>`, the rest is passed on as the API names it.
fn search_query(
    form: &BTreeMap<String, String>,
    now_unix_nanos: u64,
) -> Result<views::SpanQuery, String> {
    let mut params: Vec<(String, String)> = Vec::new();
    for (key, value) in form {
        match key.as_str() {
            "last" => {
                let minutes =
                    LOOKBACKS.iter().find(|(k, _)| k == value).map(|(_, m)| *m).ok_or_else(
                        || format!("`last` = `{value}` is not one of 15m, 1h, 6h, 24h, 7d"),
                    )?;
                if !form.contains_key("start") {
                    params.push((
                        "start".into(),
                        views::rfc3339(now_unix_nanos.saturating_sub(minutes * NANOS_PER_MINUTE)),
                    ));
                }
            }
            "attributes" => {
                for line in value.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    let (k, v) = line.split_once('=').ok_or_else(|| {
                        format!(
                            "attribute filter `{line}` must look like `key=value`, one per line"
                        )
                    })?;
                    params.push((format!("attr.{}", k.trim()), v.trim().to_owned()));
                }
            }
            // How the page orders what it found; not a search parameter.
            "sort" => {}
            _ => params.push((key.clone(), value.clone())),
        }
    }
    if !form.contains_key("last") && !form.contains_key("start") {
        params.push((
            "start".into(),
            views::rfc3339(now_unix_nanos.saturating_sub(60 * NANOS_PER_MINUTE)),
        ));
    }
    views::traces::parse_search(&params, now_unix_nanos).map_err(|e| e.message)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shapes::{EventJ, FindingJ, LinkJ, ReviewJ, SpanDetailJ};

    #[test]
    fn exceptions_show_their_message_and_stack_trace_and_the_axis_spans_the_trace() {
        let event = EventJ {
            name: "exception".into(),
            time: "2026-01-01T00:00:01Z".into(),
            attributes: serde_json::from_value(json!({
                "exception.type": "ValueError",
                "exception.message": "no stock for sku 42",
                "exception.stacktrace": "Traceback (most recent call last):\n  File \"inventory.py\", line 9",
                "exception.escaped": true,
            }))
            .unwrap(),
            dropped_attributes_count: 0,
        };
        let row = event_row(&event);
        assert_eq!(row.summary, "ValueError: no stock for sku 42");
        assert!(row.stacktrace.unwrap().starts_with("Traceback"));
        assert_eq!(row.attributes, vec![("exception.escaped".to_owned(), "true".to_owned())]);
        assert_eq!(ticks(40.0), ["0 ms", "10 ms", "20 ms", "30 ms", "40 ms"]);
    }

    use super::*;
    use crate::escape;

    fn span(id: &str, parent: Option<&str>, start: u64, ms: f64) -> SpanJ {
        SpanJ {
            span_id: id.into(),
            parent_span_id: parent.map(str::to_owned),
            start_time_unix_nanos: start.to_string(),
            duration_ms: ms,
            detail: Some(SpanDetailJ { name: id.into(), ..SpanDetailJ::default() }),
            ..SpanJ::default()
        }
    }

    #[test]
    fn links_open_the_linked_span_in_its_trace() {
        let mut linked = span("a", None, 0, 1.0);
        linked.detail.as_mut().unwrap().links = vec![LinkJ {
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            span_id: "b7ad6b7169203331".into(),
            attributes: serde_json::from_value(json!({"messaging.operation": "process"})).unwrap(),
            ..LinkJ::default()
        }];
        let rows = waterfall(vec![linked]);
        assert_eq!(
            rows[0].links,
            vec![(
                "/traces/0af7651916cd43dd8448eb211c80319c#span-b7ad6b7169203331".to_owned(),
                "trace 0af7651916cd43dd8448eb211c80319c span b7ad6b7169203331".to_owned(),
                "messaging.operation=process".to_owned(),
            )]
        );
    }

    #[test]
    fn the_waterfall_puts_children_under_parents_in_start_order() {
        let rows = waterfall(vec![
            span("c2", Some("root"), 30_000_000, 10.0),
            span("root", None, 0, 100.0),
            span("c1", Some("root"), 10_000_000, 10.0),
            span("g1", Some("c1"), 12_000_000, 5.0),
            span("orphan", Some("gone"), 50_000_000, 1.0),
        ]);
        let order: Vec<(&str, usize)> = rows.iter().map(|r| (r.name.as_str(), r.depth)).collect();
        assert_eq!(order, [("root", 0), ("c1", 1), ("g1", 2), ("c2", 1), ("orphan", 0)]);
        assert_eq!(rows[0].bar_x, "0.0");
        assert_eq!(rows[0].bar_width, "1000.0");
        assert_eq!(rows[1].bar_x, "100.0");
    }

    #[test]
    fn the_search_form_becomes_the_api_query() {
        let now = 1_800_000_000_000_000_000;
        let form: BTreeMap<String, String> = [
            ("service", "checkout"),
            ("last", "15m"),
            ("attributes", "http.route=/cart\n\n cart.items = 5 "),
            ("min_duration_ms", "20"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let query = search_query(&form, now).unwrap();
        assert_eq!(query.service.as_deref(), Some("checkout"));
        assert_eq!(query.start_unix_nanos, now - 15 * NANOS_PER_MINUTE);
        assert_eq!(query.min_duration_nanos, Some(20_000_000));
        assert_eq!(
            query.attributes,
            [
                ("http.route".to_owned(), "/cart".to_owned()),
                ("cart.items".to_owned(), "5".to_owned())
            ]
        );
        let bad: BTreeMap<String, String> =
            [("attributes".to_owned(), "no equals sign".to_owned())].into_iter().collect();
        assert!(search_query(&bad, now).unwrap_err().contains("key=value"));
        let bad: BTreeMap<String, String> =
            [("last".to_owned(), "2y".to_owned())].into_iter().collect();
        assert!(search_query(&bad, now).unwrap_err().contains("15m"));
    }

    #[test]
    fn findings_read_as_people_say_them() {
        let numbers = serde_json::from_value(json!({
            "before": {"value_ms": 19.6, "spans": 10}, "after": {"value_ms": 37.15, "spans": 5},
            "effect": {"kind": "ratio", "estimate": 1.896, "low": 1.75, "high": 2.01},
        }))
        .unwrap();
        let f = FindingJ { metric: "latency_p95".into(), numbers, ..FindingJ::default() };
        assert_eq!(f.metric_name(), "p95 latency");
        assert_eq!(f.change_text(), "19.6 ms → 37.1 ms");
        assert_eq!(f.effect_text(), "×1.90 (1.75 to 2.01)");
        let review = ReviewJ { kind: "gitlab".into(), id: "7".into(), ..ReviewJ::default() };
        assert_eq!(review.label(), "MR !7");
        assert_eq!(escape("<a href=\"x\">"), "&lt;a href=&quot;x&quot;&gt;");
    }
}
