//! The pages: each handler asks the API's view functions (same access rules, same shapes),
//! reads the JSON into the typed views below, and renders a template.

use std::collections::BTreeMap;

use analysis::compare::WindowStats;
use askama::Template;
use axum::response::Response;
use model::TraceId;
use serde::Deserialize;
use serde_json::Value as Json_;
use store::{FindingFilter, FindingStatus, SketchQuery, SketchRow};

use super::chart::{self, Marker, Series};
use super::{
    Layout, PageCaller, PageError, PageParams, PagePath, PageState, blocking, query_escape, render,
};
use crate::access::Caller;
use crate::dora::DoraQuery;
use crate::{AppState, api, deploys, findings};

const NANOS_PER_MINUTE: u64 = 60_000_000_000;
/// The home page's "now": the last this many minutes.
const CURRENT_MINUTES: i64 = 15;
const HOME_FINDINGS: usize = 50;
/// Diff lines shown per suspect.
const MAX_DIFF_LINES: usize = 160;

// ---------------------------------------------------------------------------------------------
// Shapes of the API's JSON, as the pages read them.

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct CommitJ {
    pub(crate) sha: String,
    pub(crate) subject: String,
    pub(crate) author: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) repository: String,
}

impl CommitJ {
    pub(crate) fn short(&self) -> &str {
        self.sha.get(..10).unwrap_or(&self.sha)
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct ReviewJ {
    pub(crate) kind: String,
    pub(crate) id: String,
    pub(crate) title: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) author: Option<String>,
    pub(crate) state: Option<String>,
}

impl ReviewJ {
    /// How the forge names it: `D123`, `PR #45`, `MR !7`.
    pub(crate) fn label(&self) -> String {
        match self.kind.as_str() {
            "phabricator" => self.id.clone(),
            "gitlab" => format!("MR !{}", self.id),
            _ => format!("PR #{}", self.id),
        }
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct ChangeJ {
    pub(crate) version: Option<String>,
    pub(crate) commit: Option<CommitJ>,
    pub(crate) review: Option<ReviewJ>,
    pub(crate) owner: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StatusJ {
    code: String,
    message: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EventJ {
    name: String,
    time: String,
    attributes: serde_json::Map<String, Json_>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SpanJ {
    span_id: String,
    parent_span_id: Option<String>,
    redacted: bool,
    name: String,
    kind: String,
    service: String,
    environment: Option<String>,
    start_time: String,
    start_time_unix_nanos: String,
    duration_ms: f64,
    status: StatusJ,
    attributes: serde_json::Map<String, Json_>,
    code: serde_json::Map<String, Json_>,
    events: Vec<EventJ>,
    resource: ResourceJ,
    change: Option<ChangeJ>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ResourceJ {
    attributes: serde_json::Map<String, Json_>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct DeployJ {
    pub(crate) id: u64,
    pub(crate) service: String,
    pub(crate) environment: Option<String>,
    pub(crate) version: String,
    pub(crate) commit_sha: Option<String>,
    pub(crate) commit: Option<CommitJ>,
    pub(crate) started_at: String,
    pub(crate) deployer: Option<String>,
    pub(crate) is_rollback: bool,
    pub(crate) url: Option<String>,
    pub(crate) source: String,
    pub(crate) previous: Option<PreviousJ>,
    pub(crate) range: Option<RangeJ>,
    /// Commit impact only: how the deploy shipped the commit.
    pub(crate) shipped_as: Option<String>,
    pub(crate) traces_after: Option<String>,
    pub(crate) traces_before: Option<String>,
}

impl DeployJ {
    /// The pipeline link, only when it is an http(s) address (a `javascript:` one stored by
    /// an older version is not rendered as a link).
    pub(crate) fn pipeline_link(&self) -> Option<&str> {
        self.url.as_deref().filter(|url| crate::deploys::is_web_url(url))
    }

    pub(crate) fn environment(&self) -> &str {
        self.environment.as_deref().unwrap_or("(none)")
    }

    pub(crate) fn when(&self) -> String {
        short_time(&self.started_at)
    }

    pub(crate) fn service_href(&self) -> String {
        service_href(&self.service)
    }

    /// The UI's trace searches for the links the API gave (`/api/v1/traces?...`).
    pub(crate) fn ui_after(&self) -> Option<String> {
        self.traces_after.as_ref().map(|l| l.replacen("/api/v1/traces", "/traces", 1) + "&last=7d")
    }

    pub(crate) fn ui_before(&self) -> Option<String> {
        self.traces_before.as_ref().map(|l| l.replacen("/api/v1/traces", "/traces", 1) + "&last=7d")
    }

    /// The search for this deploy's version.
    pub(crate) fn traces_href(&self) -> String {
        let mut href = format!(
            "/traces?service={}&version={}&last=7d",
            query_escape(&self.service),
            query_escape(&self.version)
        );
        if let Some(environment) = &self.environment {
            href.push_str(&format!("&environment={}", query_escape(environment)));
        }
        href
    }
}

/// A service's page.
pub(crate) fn service_href(name: &str) -> String {
    format!("/services/{}", query_escape(name))
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct PreviousJ {
    pub(crate) id: u64,
    pub(crate) version: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct RangeJ {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) commits: Vec<RangeCommitJ>,
    pub(crate) truncated: bool,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct RangeCommitJ {
    pub(crate) sha: String,
    pub(crate) subject: String,
    pub(crate) author: Option<String>,
}

impl RangeCommitJ {
    pub(crate) fn short(&self) -> &str {
        self.sha.get(..10).unwrap_or(&self.sha)
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct SideJ {
    pub(crate) spans: u64,
    pub(crate) value_ms: Option<f64>,
    pub(crate) error_rate: Option<f64>,
    pub(crate) errors: Option<u64>,
    pub(crate) error_types: Option<u64>,
}

impl SideJ {
    /// The value in the metric's unit.
    pub(crate) fn value_text(&self) -> String {
        match (self.value_ms, self.error_rate, self.error_types) {
            (Some(ms), _, _) => ms_text(ms),
            (_, Some(rate), _) => percent_text(rate),
            (_, _, Some(n)) => format!("{n} error types"),
            _ => "—".into(),
        }
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct EffectJ {
    pub(crate) kind: String,
    pub(crate) estimate: f64,
    pub(crate) low: f64,
    pub(crate) high: f64,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct SuspectJ {
    pub(crate) commit: CommitJ,
    pub(crate) score: f64,
    pub(crate) reasons: Vec<String>,
    pub(crate) files: Vec<String>,
    pub(crate) review: Option<ReviewJ>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct ExemplarJ {
    pub(crate) trace_id: String,
    pub(crate) duration_ms: f64,
    pub(crate) version: Option<String>,
    pub(crate) start: String,
}

impl ExemplarJ {
    pub(crate) fn duration_text(&self) -> String {
        let version = self.version.as_deref().map(|v| format!(", version {v}")).unwrap_or_default();
        format!("{}{version}, {}", ms_text(self.duration_ms), short_time(&self.start))
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct ExemplarSideJ {
    pub(crate) typical: Option<ExemplarJ>,
    pub(crate) slowest: Option<ExemplarJ>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct ExemplarsJ {
    pub(crate) before: ExemplarSideJ,
    pub(crate) after: ExemplarSideJ,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct RollbackJ {
    pub(crate) previous_version: Option<String>,
    pub(crate) revert_commits: Vec<String>,
    pub(crate) commands: Vec<String>,
    pub(crate) patch: Option<String>,
    pub(crate) note: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct CodeLocationJ {
    pub(crate) function: Option<String>,
    pub(crate) file: Option<String>,
    pub(crate) line: Option<i64>,
    pub(crate) share: f64,
}

impl CodeLocationJ {
    pub(crate) fn share_text(&self) -> String {
        percent_text(self.share)
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct ChildChangeJ {
    pub(crate) name: String,
    pub(crate) before_per_parent: f64,
    pub(crate) after_per_parent: f64,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct SlowAttributeJ {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) slow_share: f64,
    pub(crate) fast_share: f64,
}

impl SlowAttributeJ {
    pub(crate) fn slow_text(&self) -> String {
        percent_text(self.slow_share)
    }

    pub(crate) fn fast_text(&self) -> String {
        percent_text(self.fast_share)
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct EvidenceJ {
    pub(crate) code_locations: Vec<CodeLocationJ>,
    pub(crate) child_changes: Vec<ChildChangeJ>,
    pub(crate) slow_attributes: Vec<SlowAttributeJ>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct FindingJ {
    pub(crate) id: u64,
    pub(crate) deploy_id: u64,
    pub(crate) service: String,
    pub(crate) environment: Option<String>,
    pub(crate) operation: String,
    pub(crate) span_kind: String,
    pub(crate) metric: String,
    pub(crate) verdict: String,
    pub(crate) status: String,
    pub(crate) is_final: bool,
    pub(crate) look_minutes: u64,
    pub(crate) first_seen: String,
    pub(crate) status_by: Option<String>,
    pub(crate) status_note: Option<String>,
    pub(crate) before: SideJ,
    pub(crate) after: SideJ,
    pub(crate) effect: Option<EffectJ>,
    pub(crate) confidence: Option<f64>,
    pub(crate) p_value: Option<f64>,
    pub(crate) reason: Option<String>,
    pub(crate) guard: Option<String>,
    pub(crate) suspects: Vec<SuspectJ>,
    pub(crate) exemplars: Option<ExemplarsJ>,
    pub(crate) evidence: Option<EvidenceJ>,
    pub(crate) rollback: Option<RollbackJ>,
    pub(crate) deploy: Option<DeployJ>,
    pub(crate) notifications: Vec<NotificationJ>,
}

/// One notification of a finding, as `notify::delivery_view` writes it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct NotificationJ {
    pub(crate) sink: String,
    pub(crate) kind: String,
    pub(crate) target: String,
    pub(crate) state: String,
    pub(crate) attempts: u32,
    pub(crate) next_attempt: Option<String>,
    pub(crate) last_error: Option<String>,
}

impl NotificationJ {
    /// "1 attempt", "3 attempts, next at 10:04:05 UTC".
    pub(crate) fn attempts_text(&self) -> String {
        let plural = if self.attempts == 1 { "" } else { "s" };
        match &self.next_attempt {
            Some(next) if self.state == "pending" => {
                format!("{} attempt{plural}, next at {}", self.attempts, short_time(next))
            }
            _ => format!("{} attempt{plural}", self.attempts),
        }
    }
}

impl FindingJ {
    pub(crate) fn environment(&self) -> &str {
        self.environment.as_deref().unwrap_or("(none)")
    }

    pub(crate) fn when(&self) -> String {
        short_time(&self.first_seen)
    }

    pub(crate) fn service_href(&self) -> String {
        service_href(&self.service)
    }

    /// One side's value in the metric's unit.
    pub(crate) fn side_text(&self, before: bool) -> String {
        let side = if before { &self.before } else { &self.after };
        match side.errors {
            Some(errors) if side.error_rate.is_some() => {
                format!("{} ({errors} errors)", side.value_text())
            }
            _ => side.value_text(),
        }
    }

    pub(crate) fn confidence_text(&self, confidence: &f64) -> String {
        let text = format!("{:.4}", confidence * 100.0);
        format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
    }

    pub(crate) fn p_text(&self) -> String {
        match self.p_value {
            Some(p) if p <= 1e-13 => "below 1e-13".into(),
            Some(p) if p < 0.001 => format!("{p:.1e}"),
            Some(p) => format!("{p:.3}"),
            None => "—".into(),
        }
    }

    /// "p95 latency", "error rate", ...
    pub(crate) fn metric_name(&self) -> String {
        match self.metric.as_str() {
            "error_rate" => "error rate".into(),
            "new_error_types" => "new error types".into(),
            other => match other.strip_prefix("latency_") {
                Some(q) => format!("{q} latency"),
                None => other.replace('_', " "),
            },
        }
    }

    /// Before → after, in the metric's unit.
    pub(crate) fn change_text(&self) -> String {
        format!("{} → {}", self.before.value_text(), self.after.value_text())
    }

    /// "×1.90 (1.75 to 2.01)" or "+1.2 points (0.4 to 2.0)".
    pub(crate) fn effect_text(&self) -> String {
        match &self.effect {
            Some(e) if e.kind == "ratio" => {
                format!("×{:.2} ({:.2} to {:.2})", e.estimate, e.low, e.high)
            }
            Some(e) => format!(
                "{:+.2} points ({:+.2} to {:+.2})",
                e.estimate * 100.0,
                e.low * 100.0,
                e.high * 100.0
            ),
            None => "—".into(),
        }
    }

    /// Whether the metric moved: a regression or an improvement.
    pub(crate) fn moved(&self) -> bool {
        self.verdict == "regressed" || self.verdict == "improved"
    }

    pub(crate) fn top_suspect(&self) -> Option<&SuspectJ> {
        self.suspects.first()
    }
}

fn read<T: for<'de> Deserialize<'de> + Default>(value: Json_) -> T {
    serde_json::from_value(value).unwrap_or_default()
}

/// `2026-11-21 13:10:04 UTC` from RFC 3339.
pub(crate) fn short_time(rfc3339: &str) -> String {
    rfc3339
        .parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| rfc3339.to_owned())
}

fn unix_secs(rfc3339: &str) -> Option<f64> {
    rfc3339.parse::<jiff::Timestamp>().ok().map(|t| t.as_nanosecond() as f64 / 1e9)
}

fn ms_text(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{} ms", chart::short_number(ms))
    }
}

fn percent_text(fraction: f64) -> String {
    format!("{}%", chart::short_number(fraction * 100.0))
}

// ---------------------------------------------------------------------------------------------
// Sketch reads: current and historical numbers without scanning spans.

/// Numbers of one group of sketches.
#[derive(Debug, Clone, Default)]
pub(crate) struct Numbers {
    pub(crate) spans: u64,
    pub(crate) p50: String,
    pub(crate) p95: String,
    pub(crate) p99: String,
    pub(crate) error_rate: String,
}

impl Numbers {
    fn of(stats: &WindowStats) -> Numbers {
        let q = |q: f64| stats.latency.quantile(q).map_or_else(|| "—".into(), |n| ms_text(n / 1e6));
        Numbers {
            spans: stats.spans,
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

fn sketches(
    state: &AppState,
    service: &str,
    environment: Option<&str>,
    minutes: i64,
) -> Result<Vec<SketchRow>, PageError> {
    let now_minute = (state.clock.now_unix_nanos() / NANOS_PER_MINUTE) as i64;
    Ok(state.store.sketches(&SketchQuery {
        service: service.to_owned(),
        environment: environment.map(str::to_owned),
        from_unix_minute: now_minute - minutes,
        to_unix_minute: now_minute + 1,
    })?)
}

/// The rows of a service's entry points: its server spans (all spans when it has none).
fn entry_points<'a>(rows: &[&'a SketchRow]) -> Vec<&'a SketchRow> {
    let servers: Vec<&SketchRow> =
        rows.iter().copied().filter(|r| r.series.span_kind == "server").collect();
    if servers.is_empty() { rows.to_vec() } else { servers }
}

/// The rows of the series the caller may see.
fn visible<'a>(rows: &'a [SketchRow], caller: &Caller) -> Vec<&'a SketchRow> {
    rows.iter()
        .filter(|r| {
            let environment = Some(r.series.environment.as_str()).filter(|e| !e.is_empty());
            caller.visibility.allows(&r.series.service, environment)
        })
        .collect()
}

fn merged<'a>(rows: impl IntoIterator<Item = &'a SketchRow>) -> WindowStats {
    let mut stats = WindowStats::default();
    for row in rows {
        stats.merge(&row.stats);
    }
    stats
}

// ---------------------------------------------------------------------------------------------
// Home

impl ServiceRow {
    pub(crate) fn href(&self) -> String {
        service_href(&self.name)
    }
}

pub(crate) struct ServiceRow {
    pub(crate) name: String,
    pub(crate) team: Option<String>,
    pub(crate) versions: String,
    pub(crate) now: Numbers,
    pub(crate) open_regressions: usize,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    layout: Layout,
    services: Vec<ServiceRow>,
    regressions: Vec<FindingJ>,
    other_open: usize,
    ingest_url: String,
    current_minutes: i64,
}

pub(crate) async fn home(state: PageState, caller: PageCaller) -> Result<Response, PageError> {
    let (state, caller) = (state.0, caller.0);
    let page = blocking(state, caller, |state, caller| {
        let open = findings::list(
            state,
            caller,
            FindingFilter {
                status: Some(FindingStatus::Open),
                limit: 1_000,
                ..FindingFilter::default()
            },
        )?;
        let (regressions, others): (Vec<Json_>, Vec<Json_>) =
            open.into_iter().partition(|f| f["verdict"] == "regressed");
        let regressions: Vec<FindingJ> = regressions.into_iter().map(read).collect();
        let other_open = others.len();
        let mut services = Vec::new();
        for service in api::services(state, caller)? {
            let name = service["name"].as_str().unwrap_or_default().to_owned();
            let rows = sketches(state, &name, None, CURRENT_MINUTES)?;
            let now = Numbers::of(&merged(entry_points(&visible(&rows, caller))));
            let mut versions: BTreeMap<String, (String, String)> = BTreeMap::new();
            for v in service["versions"].as_array().into_iter().flatten() {
                let environment = v["environment"].as_str().unwrap_or("(none)").to_owned();
                let version = v["version"].as_str().unwrap_or_default().to_owned();
                let last_seen = v["last_seen"].as_str().unwrap_or_default().to_owned();
                let newer = versions.get(&environment).is_none_or(|(_, seen)| *seen < last_seen);
                if newer {
                    versions.insert(environment, (version, last_seen));
                }
            }
            services.push(ServiceRow {
                team: state.settings.changes.ownership(&name).and_then(|o| o.team.clone()),
                versions: versions
                    .iter()
                    .map(|(env, (v, _))| format!("{v} in {env}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                open_regressions: regressions.iter().filter(|f| f.service == name).count(),
                now,
                name,
            });
        }
        // Services with open regressions first, then by name.
        services
            .sort_by(|a, b| b.open_regressions.cmp(&a.open_regressions).then(a.name.cmp(&b.name)));
        // Entry points first: what callers feel, then the code paths that explain it.
        let mut regressions = regressions;
        regressions.sort_by_key(|f| (f.span_kind != "server", std::cmp::Reverse(f.id)));
        regressions.truncate(HOME_FINDINGS);
        Ok(HomePage {
            layout: Layout::new(caller, "home", "spanblame"),
            services,
            regressions,
            other_open,
            ingest_url: state.public_url().unwrap_or("http://127.0.0.1:7420").to_owned(),
            current_minutes: CURRENT_MINUTES,
        })
    })
    .await?;
    render(&page)
}

// ---------------------------------------------------------------------------------------------
// Findings

#[derive(Template)]
#[template(path = "findings.html")]
struct FindingsPage {
    layout: Layout,
    findings: Vec<FindingJ>,
    filters: Vec<(String, String)>,
    next: Option<String>,
}

pub(crate) async fn findings_page(
    state: PageState,
    caller: PageCaller,
    params: PageParams,
) -> Result<Response, PageError> {
    let params: Vec<(String, String)> =
        params.0.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    let filter = findings::parse_filter(params.clone())?;
    let limit = filter.limit;
    let page = blocking(state.0, caller.0, move |state, caller| {
        let found: Vec<FindingJ> =
            findings::list(state, caller, filter)?.into_iter().map(read).collect();
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
        Ok(FindingsPage {
            layout: Layout::new(caller, "findings", "Findings"),
            findings: found,
            filters: params,
            next,
        })
    })
    .await?;
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
}

#[derive(Template)]
#[template(path = "finding.html")]
struct FindingPage {
    layout: Layout,
    f: FindingJ,
    suspects: Vec<SuspectView>,
    distribution: Option<String>,
    rollback_text: String,
    before_window: String,
    after_window: String,
}

pub(crate) async fn finding_page(
    state: PageState,
    caller: PageCaller,
    id: PagePath,
) -> Result<Response, PageError> {
    let id: u64 = id.0.parse().map_err(|_| {
        PageError::not_found(format!("`{}` is not a finding id; ids are numbers", id.0))
    })?;
    let page = blocking(state.0, caller.0, move |state, caller| {
        let Some(json) = findings::finding(state, caller, id)? else {
            return Err(PageError::not_found(format!(
                "there is no finding {id} (or you may not see it)"
            )));
        };
        let f: FindingJ = read(json);
        let suspects = f
            .suspects
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (diff, diff_truncated) =
                    if i < 3 { diff_of(state, &s.commit) } else { (Vec::new(), false) };
                SuspectView { rank: i + 1, suspect: s.clone(), diff, diff_truncated }
            })
            .collect();
        let (distribution, before_window, after_window) = match distribution(state, &f)? {
            Some((svg, before, after)) => (Some(svg), before, after),
            None => (None, String::new(), String::new()),
        };
        let rollback_text = f
            .rollback
            .as_ref()
            .map(|r| {
                let mut text = r.commands.join("\n");
                if let Some(patch) = &r.patch {
                    text.push_str("\n\n");
                    text.push_str(patch);
                }
                text
            })
            .unwrap_or_default();
        Ok(FindingPage {
            layout: Layout::new(
                caller,
                "findings",
                format!("Finding {id}: {} {} {}", f.service, f.operation, f.verdict),
            ),
            f,
            suspects,
            distribution,
            rollback_text,
            before_window,
            after_window,
        })
    })
    .await?;
    render(&page)
}

/// The commit's diff from its repository's mirror, coloured by line.
fn diff_of(state: &AppState, commit: &CommitJ) -> (Vec<DiffLine>, bool) {
    let Some(mirror) = state.mirrors.get(&commit.repository) else { return (Vec::new(), false) };
    let Ok(patch) = mirror.patch(&commit.sha) else { return (Vec::new(), false) };
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

/// Before and after latency distributions of the finding's operation, from the sketches of
/// the window before the deploy (other versions) and after it (the deployed version).
/// Returns the chart and the two windows in words; `None` for other metrics.
fn distribution(
    state: &AppState,
    f: &FindingJ,
) -> Result<Option<(String, String, String)>, PageError> {
    let Some(deploy) = f.deploy.as_ref().filter(|_| f.metric.starts_with("latency")) else {
        return Ok(None);
    };
    let Some(start) = unix_secs(&deploy.started_at) else { return Ok(None) };
    let start_minute = (start / 60.0) as i64;
    let before_minutes = i64::from(state.settings.detection.before_window_minutes);
    let after_minutes = (f.look_minutes as i64).max(1);
    let rows = state.store.sketches(&SketchQuery {
        service: f.service.clone(),
        environment: f.environment.clone(),
        from_unix_minute: start_minute - before_minutes,
        to_unix_minute: start_minute + after_minutes + 1,
    })?;
    let ours =
        |r: &&SketchRow| r.series.operation == f.operation && r.series.span_kind == f.span_kind;
    let before = merged(
        rows.iter()
            .filter(ours)
            .filter(|r| r.unix_minute < start_minute && r.series.version != deploy.version),
    );
    let after = merged(
        rows.iter()
            .filter(ours)
            .filter(|r| r.unix_minute >= start_minute && r.series.version == deploy.version),
    );
    let buckets = |s: &WindowStats| -> Vec<(f64, f64, u64)> {
        s.latency.buckets().map(|b| (b.lower_nanos / 1e6, b.upper_nanos / 1e6, b.count)).collect()
    };
    let previous =
        deploy.previous.as_ref().map_or("before".to_owned(), |p| format!("{} (before)", p.version));
    let svg = chart::distribution_chart(
        &format!("Latency of {} before and after the deploy", f.operation),
        &[
            (format!("{previous}: {} spans", before.spans), "before", buckets(&before)),
            (
                format!("{} (after): {} spans", deploy.version, after.spans),
                "after",
                buckets(&after),
            ),
        ],
    );
    Ok(Some((
        svg,
        format!("{before_minutes} minutes before the deploy"),
        format!("{after_minutes} minutes after it"),
    )))
}

// ---------------------------------------------------------------------------------------------
// Traces

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
    pub(crate) events: Vec<String>,
}

#[derive(Template)]
#[template(path = "trace.html")]
struct TracePage {
    layout: Layout,
    trace_id: String,
    rows: Vec<SpanRow>,
    duration: String,
    services: String,
    redacted: usize,
}

pub(crate) async fn trace_page(
    state: PageState,
    caller: PageCaller,
    id: PagePath,
) -> Result<Response, PageError> {
    let trace_id = id.0;
    let id = TraceId::from_hex(&trace_id).map_err(|e| {
        PageError::not_found(format!(
            "`{trace_id}` is not a trace id ({e}); trace ids are 32 hex digits"
        ))
    })?;
    let page = blocking(state.0, caller.0, move |state, caller| {
        let spans: Vec<SpanJ> =
            api::trace_spans(state, caller, &id)?.into_iter().map(read).collect();
        if spans.is_empty() {
            return Err(PageError::not_found(format!(
                "no spans are stored for trace {} (or you may not see them)",
                id.to_hex()
            )));
        }
        let rows = waterfall(spans);
        let mut services: Vec<&str> = rows.iter().map(|r| r.service.as_str()).collect();
        services.sort_unstable();
        services.dedup();
        Ok(TracePage {
            layout: Layout::new(caller, "traces", format!("Trace {}", id.to_hex())),
            trace_id: id.to_hex(),
            duration: rows.first().map(|r| r.duration.clone()).unwrap_or_default(),
            services: services.join(", "),
            redacted: rows.iter().filter(|r| r.redacted).count(),
            rows,
        })
    })
    .await?;
    render(&page)
}

/// Spans in tree order (parents before children, siblings by start), with their bars.
fn waterfall(spans: Vec<SpanJ>) -> Vec<SpanRow> {
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
    let mut slots: Vec<Option<SpanJ>> = spans.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|(i, depth)| {
            let span = slots[i].take()?;
            let offset = (start(&span) - trace_start) as f64 / total * 1000.0;
            let width = (span.duration_ms * 1e6 / total * 1000.0).max(2.0);
            let text = |map: &serde_json::Map<String, Json_>| -> Vec<(String, String)> {
                map.iter()
                    .map(|(k, v)| {
                        (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    })
                    .collect()
            };
            let code = {
                let function = span.code.get("function_name").and_then(Json_::as_str);
                let file = span.code.get("file_path").and_then(Json_::as_str);
                let line = span.code.get("line_number").and_then(Json_::as_i64);
                match (function, file, line) {
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
                    span.name.clone()
                },
                kind: span.kind.clone(),
                environment: span.environment.clone().unwrap_or_default(),
                start: short_time(&span.start_time),
                duration: ms_text(span.duration_ms),
                error: span.status.code == "error",
                status_message: span.status.message.clone(),
                bar_x: format!("{offset:.1}"),
                bar_width: format!("{:.1}", width.min(1000.0 - offset).max(1.0)),
                change: span
                    .change
                    .clone()
                    .filter(|c| c.version.is_some() || c.commit.is_some() || c.owner.is_some()),
                code,
                attributes: text(&span.attributes),
                resource: text(&span.resource.attributes),
                events: span
                    .events
                    .iter()
                    .map(|e| {
                        let detail = e
                            .attributes
                            .get("exception.type")
                            .and_then(Json_::as_str)
                            .unwrap_or_default();
                        format!("{} {} {}", short_time(&e.time), e.name, detail).trim().to_owned()
                    })
                    .collect(),
                span_id: span.span_id,
            })
        })
        .collect()
}

pub(crate) struct TraceResult {
    pub(crate) trace_id: String,
    pub(crate) when: String,
    pub(crate) service: String,
    pub(crate) operation: String,
    pub(crate) duration: String,
    pub(crate) error: bool,
    pub(crate) matched: usize,
}

#[derive(Template)]
#[template(path = "traces.html")]
struct SearchPage {
    layout: Layout,
    form: BTreeMap<String, String>,
    results: Vec<TraceResult>,
    error: Option<String>,
    services: Vec<String>,
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

pub(crate) async fn search_page(
    state: PageState,
    caller: PageCaller,
    params: PageParams,
) -> Result<Response, PageError> {
    let form: BTreeMap<String, String> = params
        .0
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k, v.trim().to_owned()))
        .collect();
    let now = state.0.clock.now_unix_nanos();
    let query = search_query(&form, now);
    let (status, page) = blocking(state.0, caller.0, move |state, caller| {
        let services: Vec<String> = api::services(state, caller)?
            .iter()
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect();
        let layout = Layout::new(caller, "traces", "Search traces");
        let query = match query {
            Ok(query) => query,
            Err(message) => {
                return Ok((
                    axum::http::StatusCode::BAD_REQUEST,
                    SearchPage {
                        layout,
                        form,
                        results: Vec::new(),
                        error: Some(message),
                        services,
                    },
                ));
            }
        };
        let results = api::search(state, caller, query)?
            .into_iter()
            .map(|m| {
                let first = &m["matched_spans"][0];
                TraceResult {
                    trace_id: m["trace_id"].as_str().unwrap_or_default().to_owned(),
                    when: short_time(m["newest_match_time"].as_str().unwrap_or_default()),
                    service: first["service"].as_str().unwrap_or_default().to_owned(),
                    operation: first["operation"].as_str().unwrap_or_default().to_owned(),
                    duration: ms_text(first["duration_ms"].as_f64().unwrap_or(0.0)),
                    error: first["status"] == "error",
                    matched: m["matched_spans"].as_array().map_or(0, Vec::len),
                }
            })
            .collect();
        Ok((
            axum::http::StatusCode::OK,
            SearchPage { layout, form, results, error: None, services },
        ))
    })
    .await?;
    let mut response = render(&page)?;
    *response.status_mut() = status;
    Ok(response)
}

/// The API's search from the form: `last` becomes `start`, `attributes` lines become
/// `attr.<key>`, the rest is passed on as the API names it.
fn search_query(
    form: &BTreeMap<String, String>,
    now_unix_nanos: u64,
) -> Result<store::SpanQuery, String> {
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
                        api::rfc3339(now_unix_nanos.saturating_sub(minutes * NANOS_PER_MINUTE)),
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
            _ => params.push((key.clone(), value.clone())),
        }
    }
    if !form.contains_key("last") && !form.contains_key("start") {
        params.push((
            "start".into(),
            api::rfc3339(now_unix_nanos.saturating_sub(60 * NANOS_PER_MINUTE)),
        ));
    }
    api::parse_search(&params, now_unix_nanos).map_err(|e| e.message)
}

// ---------------------------------------------------------------------------------------------
// Services

pub(crate) struct OperationRow {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) numbers: Numbers,
    pub(crate) search: String,
}

pub(crate) struct VersionRow {
    pub(crate) environment: String,
    pub(crate) version: String,
    pub(crate) first_seen: String,
    pub(crate) last_seen: String,
    pub(crate) spans: u64,
}

#[derive(Template)]
#[template(path = "service.html")]
struct ServicePage {
    layout: Layout,
    name: String,
    team: Option<String>,
    environment: String,
    environments: Vec<String>,
    operation: String,
    hours: u64,
    latency_chart: String,
    error_chart: String,
    window: Numbers,
    operations: Vec<OperationRow>,
    versions: Vec<VersionRow>,
    deploys: Vec<DeployJ>,
    findings: Vec<FindingJ>,
}

impl ServicePage {
    fn is_hours(&self, hours: &u64) -> bool {
        self.hours == *hours
    }

    fn base_href(&self) -> String {
        service_href(&self.name)
    }

    /// This page with `key` set to `value` (or, with an empty key, without an operation).
    fn self_link(&self, key: &str, value: &str) -> String {
        let mut query = vec![format!("hours={}", self.hours)];
        if !self.environment.is_empty() {
            query.push(format!("environment={}", query_escape(&self.environment)));
        }
        if key == "operation" {
            query.push(format!("operation={}", query_escape(value)));
        }
        format!("{}?{}", self.base_href(), query.join("&"))
    }
}

const HOURS: [u64; 4] = [1, 3, 6, 24];

pub(crate) async fn service_page(
    state: PageState,
    caller: PageCaller,
    name: PagePath,
    params: PageParams,
) -> Result<Response, PageError> {
    let name = name.0;
    let (mut environment, mut operation, mut hours) = (None, None, 3u64);
    for (key, value) in params.0.into_iter().filter(|(_, v)| !v.is_empty()) {
        match key.as_str() {
            "environment" => environment = Some(value),
            "operation" => operation = Some(value),
            "hours" => {
                hours = value.parse().ok().filter(|h| HOURS.contains(h)).ok_or_else(|| {
                    PageError::bad_request(format!("`hours` = `{value}` is not one of 1, 3, 6, 24"))
                })?
            }
            other => {
                return Err(PageError::bad_request(format!(
                    "unknown parameter `{other}`; use environment, operation or hours"
                )));
            }
        }
    }
    let page = blocking(state.0, caller.0, move |state, caller| {
        let Some(service) =
            api::services(state, caller)?.into_iter().find(|s| s["name"] == name.as_str())
        else {
            return Err(PageError::not_found(format!(
                "no spans of service `{name}` are stored (or you may not see them)"
            )));
        };
        let minutes = (hours * 60) as i64;
        let rows = sketches(state, &name, environment.as_deref(), minutes)?;
        let visible = visible(&rows, caller);
        let charted: Vec<&SketchRow> = match &operation {
            Some(op) => visible.iter().copied().filter(|r| &r.series.operation == op).collect(),
            None => entry_points(&visible),
        };
        // Buckets of `hours` minutes: 60 points whatever the window.
        let bucket = hours as i64;
        let mut by_bucket: BTreeMap<i64, WindowStats> = BTreeMap::new();
        for row in &charted {
            by_bucket
                .entry(row.unix_minute.div_euclid(bucket) * bucket)
                .or_default()
                .merge(&row.stats);
        }
        let point = |minute: &i64| (*minute as f64 + bucket as f64 / 2.0) * 60.0;
        let quantile = |q: f64| -> Vec<(f64, f64)> {
            by_bucket
                .iter()
                .filter_map(|(m, s)| s.latency.quantile(q).map(|v| (point(m), v / 1e6)))
                .collect()
        };
        let deploys: Vec<DeployJ> =
            deploys::deploys(state, caller, Some(&name), environment.as_deref(), 200)?
                .into_iter()
                .map(read)
                .collect();
        let now_secs = state.clock.now_unix_nanos() as f64 / 1e9;
        let from_secs = now_secs - minutes as f64 * 60.0;
        let markers: Vec<Marker> = deploys
            .iter()
            .filter_map(|d| {
                let x = unix_secs(&d.started_at)?;
                (x >= from_secs).then(|| Marker {
                    x,
                    label: format!(
                        "deploy of {} in {} at {}",
                        d.version,
                        d.environment(),
                        d.when()
                    ),
                    href: format!("/deploys/{}", d.id),
                    class: if d.is_rollback { "rollback" } else { "deploy" },
                })
            })
            .collect();
        let subject = operation.clone().unwrap_or_else(|| "entry points".into());
        let latency_chart = chart::time_chart(
            &format!("{name} {subject}: latency"),
            " ms",
            &[
                Series { name: "p50".into(), class: "p50", points: quantile(0.5) },
                Series { name: "p95".into(), class: "p95", points: quantile(0.95) },
                Series { name: "p99".into(), class: "p99", points: quantile(0.99) },
            ],
            &markers,
        );
        let error_chart = chart::time_chart(
            &format!("{name} {subject}: error rate"),
            "%",
            &[Series {
                name: "errors".into(),
                class: "errors",
                points: by_bucket
                    .iter()
                    .filter(|(_, s)| s.spans > 0)
                    .map(|(m, s)| (point(m), s.errors as f64 / s.spans as f64 * 100.0))
                    .collect(),
            }],
            &markers,
        );
        let mut per_operation: BTreeMap<(String, String), WindowStats> = BTreeMap::new();
        for row in &visible {
            per_operation
                .entry((row.series.operation.clone(), row.series.span_kind.clone()))
                .or_default()
                .merge(&row.stats);
        }
        let mut operations: Vec<OperationRow> = per_operation
            .iter()
            .map(|((op, kind), stats)| OperationRow {
                name: op.clone(),
                kind: kind.clone(),
                numbers: Numbers::of(stats),
                search: format!(
                    "/traces?service={}&operation={}{}",
                    query_escape(&name),
                    query_escape(op),
                    environment
                        .as_deref()
                        .map(|e| format!("&environment={}", query_escape(e)))
                        .unwrap_or_default()
                ),
            })
            .collect();
        operations.sort_by_key(|o| std::cmp::Reverse(o.numbers.spans));
        let versions = service["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| VersionRow {
                environment: v["environment"].as_str().unwrap_or("(none)").to_owned(),
                version: v["version"].as_str().unwrap_or_default().to_owned(),
                first_seen: short_time(v["first_seen"].as_str().unwrap_or_default()),
                last_seen: short_time(v["last_seen"].as_str().unwrap_or_default()),
                spans: v["span_count"].as_u64().unwrap_or(0),
            })
            .collect();
        let findings: Vec<FindingJ> = findings::list(
            state,
            caller,
            FindingFilter {
                service: Some(name.clone()),
                environment: environment.clone(),
                limit: 200,
                ..FindingFilter::default()
            },
        )?
        .into_iter()
        .map(read::<FindingJ>)
        .filter(FindingJ::moved)
        .take(20)
        .collect();
        Ok(ServicePage {
            layout: Layout::new(caller, "home", format!("Service {name}")),
            team: state.settings.changes.ownership(&name).and_then(|o| o.team.clone()),
            environments: service["environments"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect(),
            environment: environment.unwrap_or_default(),
            operation: operation.unwrap_or_default(),
            window: Numbers::of(&merged(charted.iter().copied())),
            hours,
            latency_chart,
            error_chart,
            operations,
            versions,
            deploys: deploys.into_iter().take(20).collect(),
            findings,
            name,
        })
    })
    .await?;
    render(&page)
}

// ---------------------------------------------------------------------------------------------
// Deploys and commits

#[derive(Template)]
#[template(path = "deploys.html")]
struct DeploysPage {
    layout: Layout,
    service: String,
    environment: String,
    deploys: Vec<DeployJ>,
}

pub(crate) async fn deploys_page(
    state: PageState,
    caller: PageCaller,
    params: PageParams,
) -> Result<Response, PageError> {
    let (mut service, mut environment) = (None, None);
    for (key, value) in params.0.into_iter().filter(|(_, v)| !v.is_empty()) {
        match key.as_str() {
            "service" => service = Some(value),
            "environment" => environment = Some(value),
            other => {
                return Err(PageError::bad_request(format!(
                    "unknown parameter `{other}`; use service or environment"
                )));
            }
        }
    }
    let page = blocking(state.0, caller.0, move |state, caller| {
        let deploys =
            deploys::deploys(state, caller, service.as_deref(), environment.as_deref(), 200)?
                .into_iter()
                .map(read)
                .collect();
        Ok(DeploysPage {
            layout: Layout::new(caller, "deploys", "Deploys"),
            service: service.unwrap_or_default(),
            environment: environment.unwrap_or_default(),
            deploys,
        })
    })
    .await?;
    render(&page)
}

#[derive(Template)]
#[template(path = "deploy.html")]
struct DeployPage {
    layout: Layout,
    d: DeployJ,
    findings: Vec<FindingJ>,
    other_findings: usize,
}

pub(crate) async fn deploy_page(
    state: PageState,
    caller: PageCaller,
    id: PagePath,
) -> Result<Response, PageError> {
    let id: u64 = id.0.parse().map_err(|_| {
        PageError::not_found(format!("`{}` is not a deploy id; ids are numbers", id.0))
    })?;
    let page = blocking(state.0, caller.0, move |state, caller| {
        let Some(deploy) = state
            .store
            .deploy(id)?
            .filter(|d| caller.visibility.allows(&d.service, Some(&d.environment)))
        else {
            return Err(PageError::not_found(format!(
                "there is no deploy {id} (or you may not see it)"
            )));
        };
        let d: DeployJ = read(deploys::deploy_view(state, &deploy)?);
        let (findings, rest): (Vec<FindingJ>, Vec<FindingJ>) =
            findings_of(state, caller, &d)?.into_iter().partition(FindingJ::moved);
        Ok(DeployPage {
            layout: Layout::new(
                caller,
                "deploys",
                format!("Deploy of {} {} to {}", d.service, d.version, d.environment()),
            ),
            d,
            findings,
            other_findings: rest.len(),
        })
    })
    .await?;
    render(&page)
}

/// A deploy's findings the caller may see.
fn findings_of(
    state: &AppState,
    caller: &Caller,
    deploy: &DeployJ,
) -> Result<Vec<FindingJ>, PageError> {
    let filter = FindingFilter {
        deploy_id: Some(deploy.id),
        service: Some(deploy.service.clone()),
        environment: deploy.environment.clone(),
        limit: 1_000,
        ..FindingFilter::default()
    };
    Ok(findings::list(state, caller, filter)?.into_iter().map(read::<FindingJ>).collect())
}

#[derive(Template)]
#[template(path = "commit.html")]
struct CommitPage {
    layout: Layout,
    commit: CommitJ,
    review: Option<ReviewJ>,
    deploys: Vec<DeployJ>,
    findings: Vec<FindingJ>,
}

pub(crate) async fn commit_page(
    state: PageState,
    caller: PageCaller,
    sha: PagePath,
) -> Result<Response, PageError> {
    let sha = sha.0;
    if !model::looks_like_sha(&sha) {
        return Err(PageError::not_found(format!(
            "`{sha}` is not a commit id; use at least 7 hex digits"
        )));
    }
    let page = blocking(state.0, caller.0, move |state, caller| {
        let Some(impact) = deploys::impact(state, caller, &sha)? else {
            return Err(PageError::not_found(format!(
                "commit `{sha}` is not known (from webhooks or mirrors)"
            )));
        };
        let commit: CommitJ = read(impact["commit"].clone());
        let review = match state.store.find_commit(&commit.sha)? {
            Some(stored) => crate::changes::ChangeResolver::new(state).review(&stored)?.map(read),
            None => None,
        };
        let deploys: Vec<DeployJ> =
            impact["deploys"].as_array().into_iter().flatten().cloned().map(read).collect();
        let mut moved = Vec::new();
        for deploy in &deploys {
            moved.extend(findings_of(state, caller, deploy)?.into_iter().filter(FindingJ::moved));
        }
        Ok(CommitPage {
            layout: Layout::new(
                caller,
                "deploys",
                format!("Commit {}: {}", commit.short(), commit.subject),
            ),
            commit,
            review,
            deploys,
            findings: moved,
        })
    })
    .await?;
    render(&page)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::escape;
    use super::*;

    fn span(id: &str, parent: Option<&str>, start: u64, ms: f64) -> SpanJ {
        SpanJ {
            span_id: id.into(),
            parent_span_id: parent.map(str::to_owned),
            name: id.into(),
            start_time_unix_nanos: start.to_string(),
            duration_ms: ms,
            ..SpanJ::default()
        }
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
        let f: FindingJ = read(json!({
            "metric": "latency_p95", "before": {"value_ms": 19.6, "spans": 10}, "after": {"value_ms": 37.15, "spans": 5},
            "effect": {"kind": "ratio", "estimate": 1.896, "low": 1.75, "high": 2.01},
        }));
        assert_eq!(f.metric_name(), "p95 latency");
        assert_eq!(f.change_text(), "19.6 ms → 37.1 ms");
        assert_eq!(f.effect_text(), "×1.90 (1.75 to 2.01)");
        let review = ReviewJ { kind: "gitlab".into(), id: "7".into(), ..ReviewJ::default() };
        assert_eq!(review.label(), "MR !7");
        assert_eq!(escape("<a href=\"x\">"), "&lt;a href=&quot;x&quot;&gt;");
    }
}

// ---------------------------------------------------------------------------------------------
// DORA.

#[derive(Template)]
#[template(path = "dora.html")]
struct DoraPage {
    layout: Layout,
    q: DoraQuery,
    scope: String,
    window_text: String,
    metrics: Vec<DoraMetric>,
    bands: Vec<DoraBand>,
    api_href: String,
}

struct DoraMetric {
    key: &'static str,
    title: &'static str,
    value: String,
    band: Option<String>,
    detail: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DoraBand {
    #[serde(skip)]
    title: &'static str,
    source: String,
    elite: String,
    high: String,
    medium: String,
    low: String,
}

/// Hours as people say them: "45 min", "7.5 h", "3.2 days".
fn duration_text(hours: f64) -> String {
    if hours < 1.0 {
        format!("{} min", (hours * 60.0).round())
    } else if hours < 48.0 {
        format!("{} h", chart::short_number(hours))
    } else {
        format!("{} days", chart::short_number(hours / 24.0))
    }
}

pub(crate) async fn dora_page(
    state: PageState,
    caller: PageCaller,
    params: PageParams,
) -> Result<Response, PageError> {
    let given: Vec<(String, String)> =
        params.0.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    let q = crate::dora::parse_query(given).map_err(|e| PageError::bad_request(e.message))?;
    let page = blocking(state.0, caller.0, move |state, caller| {
        let v = crate::dora::dora_view(state, caller, &q)?;
        let band = |metric: &str| v[metric]["band"].as_str().map(str::to_owned);
        let hours = |metric: &str| v[metric]["median_hours"].as_f64();
        let n = |metric: &str, key: &str| v[metric][key].as_u64().unwrap_or(0);
        let deployments = n("deployment_frequency", "deployments");
        let mut metrics = vec![DoraMetric {
            key: "frequency",
            title: "Deployment frequency",
            value: format!("{} / day", v["deployment_frequency"]["per_day"]),
            band: band("deployment_frequency"),
            detail: format!(
                "{deployments} deploy{}; the median week has {} days with a deploy",
                if deployments == 1 { "" } else { "s" },
                v["deployment_frequency"]["median_deploy_days_per_week"]
            ),
        }];
        let without = n("lead_time_for_changes", "deploys_without_range");
        metrics.push(DoraMetric {
            key: "lead-time",
            title: "Lead time for changes",
            value: hours("lead_time_for_changes").map_or_else(|| "—".into(), duration_text),
            band: band("lead_time_for_changes"),
            detail: format!(
                "median over {} changes{}",
                n("lead_time_for_changes", "changes"),
                if without > 0 {
                    format!("; {without} deploys' commits could not be read from a mirror")
                } else {
                    String::new()
                }
            ),
        });
        metrics.push(DoraMetric {
            key: "failure-rate",
            title: "Change failure rate",
            value: v["change_failure_rate"]["rate"]
                .as_f64()
                .map_or_else(|| "—".into(), percent_text),
            band: band("change_failure_rate"),
            detail: format!(
                "{} of {deployments} deploys had a regression attributed to them",
                n("change_failure_rate", "failed_deployments")
            ),
        });
        let unrestored = n("time_to_restore", "unrestored");
        metrics.push(DoraMetric {
            key: "restore",
            title: "Time to restore",
            value: hours("time_to_restore").map_or_else(|| "—".into(), duration_text),
            band: band("time_to_restore"),
            detail: format!(
                "median over {} restored failures{}",
                n("time_to_restore", "restored"),
                if unrestored > 0 { format!("; {unrestored} still open") } else { String::new() }
            ),
        });
        if deployments == 0 {
            metrics.clear();
        }
        let bands = [
            ("deployment_frequency", "Deployment frequency"),
            ("lead_time_for_changes", "Lead time for changes"),
            ("change_failure_rate", "Change failure rate"),
            ("time_to_restore", "Time to restore"),
        ]
        .into_iter()
        .map(|(key, title)| DoraBand { title, ..read(v["bands"][key].clone()) })
        .collect();
        let scope = match (&q.service, &q.team) {
            (Some(s), _) => format!("Service {s}"),
            (None, Some(t)) => format!("Team {t}'s services"),
            (None, None) => "All services you may see".into(),
        };
        let environment = q.environment.as_deref().map(|e| format!(" in {e}")).unwrap_or_default();
        let mut query = vec![("window", q.window.clone())];
        query.extend(q.service.clone().map(|s| ("service", s)));
        query.extend(q.team.clone().map(|t| ("team", t)));
        query.extend(q.environment.clone().map(|e| ("environment", e)));
        let api_href = format!(
            "/api/v1/dora?{}",
            query
                .iter()
                .map(|(k, v)| format!("{k}={}", query_escape(v)))
                .collect::<Vec<_>>()
                .join("&")
        );
        Ok(DoraPage {
            layout: Layout::new(caller, "dora", "DORA metrics"),
            scope: format!("{scope}{environment}"),
            window_text: format!(
                "the last {} ({} to {})",
                q.window,
                short_time(v["window"]["from"].as_str().unwrap_or("")),
                short_time(v["window"]["to"].as_str().unwrap_or(""))
            ),
            q,
            metrics,
            bands,
            api_href,
        })
    })
    .await?;
    render(&page)
}
