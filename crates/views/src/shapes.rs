//! The API's JSON shapes read back as typed values, with the words every outlet writes them
//! in (units, short times, labels): pages and notifications render these, never raw JSON.
//! A `…J` type is one object of the JSON API; a field the API leaves out reads as its default.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value as Json_;

use crate::query_escape;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct CommitJ {
    pub sha: String,
    pub subject: String,
    pub author: Option<String>,
    pub url: Option<String>,
    pub repository: String,
}

impl CommitJ {
    pub fn short(&self) -> &str {
        self.sha.get(..10).unwrap_or(&self.sha)
    }
}

/// One answer of the tagging gate (`views::gate::commit_results`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct GateJ {
    pub service: String,
    pub outcome: String,
    pub summary: String,
    pub review: Option<String>,
    pub asked_by: String,
    pub evaluated_at: String,
    pub checks: Vec<GateCheckJ>,
}

impl GateJ {
    /// Who asked, in words.
    pub fn asked_by_text(&self) -> &'static str {
        match self.asked_by.as_str() {
            "harbormaster" => "a Harbormaster build",
            "review" => "a new review head",
            _ => "the API (spanblame gate)",
        }
    }

    /// `2026-12-05 21:52 UTC`.
    pub fn when(&self) -> String {
        short_time(&self.evaluated_at)
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct GateCheckJ {
    pub name: String,
    pub title: String,
    pub outcome: String,
    pub required: bool,
    pub found: String,
    pub fix: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ReviewJ {
    pub kind: String,
    pub id: String,
    pub title: Option<String>,
    pub url: Option<String>,
    pub author: Option<String>,
    pub state: Option<String>,
}

impl ReviewJ {
    /// How the forge names it: `D123`, `PR #45`, `MR !7`.
    pub fn label(&self) -> String {
        crate::changes::review_label(&self.kind, &self.id)
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ChangeJ {
    pub version: Option<String>,
    pub commit: Option<CommitJ>,
    pub review: Option<ReviewJ>,
    pub blame: Option<BlameJ>,
    pub blame_unavailable: Option<String>,
    pub owner: Option<String>,
}

/// The most recent change to the code a span runs.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct BlameJ {
    pub sha: String,
    pub subject: String,
    pub author: Option<String>,
    pub url: Option<String>,
    pub committed_at: Option<String>,
    pub review: Option<ReviewJ>,
    pub path: String,
    pub lines: String,
    pub whole_function: bool,
    pub changed_lines: Vec<u32>,
    /// Line by line (`?blame=lines`): each line's commit and code.
    pub by_line: Vec<BlameLineJ>,
    /// The commits `by_line` names, by sha.
    pub line_commits: BTreeMap<String, LineCommitJ>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct BlameLineJ {
    pub line: u32,
    pub sha: String,
    pub code: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct LineCommitJ {
    pub subject: String,
    pub author: Option<String>,
    pub committed_at: Option<String>,
}

/// One row of a line-by-line blame, as `git blame` prints it: the commit is named on the
/// first line of each run of lines it last changed.
pub struct BlameRowJ {
    pub line: u32,
    pub code: String,
    pub sha: String,
    /// "3f89bb6129 Margaret Hamilton, 2026-11-20: Apply first-order…" on a run's first line.
    pub label: Option<String>,
    /// Whether the span's blamed commit last changed this line.
    pub blamed: bool,
}

impl BlameJ {
    /// The line-by-line rows, runs of one commit labelled once.
    pub fn line_rows(&self) -> Vec<BlameRowJ> {
        let mut previous: Option<&str> = None;
        self.by_line
            .iter()
            .map(|l| {
                let first_of_run = previous != Some(l.sha.as_str());
                previous = Some(&l.sha);
                let label = first_of_run.then(|| {
                    let short = l.sha.get(..10).unwrap_or(&l.sha);
                    match self.line_commits.get(&l.sha) {
                        Some(c) => {
                            let when = c.committed_at.as_deref().and_then(|t| t.get(..10));
                            let by = [c.author.as_deref(), when].into_iter().flatten();
                            format!("{short} {}: {}", by.collect::<Vec<_>>().join(", "), c.subject)
                        }
                        None => short.to_owned(),
                    }
                });
                BlameRowJ {
                    line: l.line,
                    code: l.code.clone(),
                    sha: l.sha.clone(),
                    label,
                    blamed: l.sha == self.sha,
                }
            })
            .collect()
    }

    pub fn short(&self) -> &str {
        self.sha.get(..10).unwrap_or(&self.sha)
    }

    /// "lines 5-17 (the function), changed here: 8-15".
    pub fn where_text(&self) -> String {
        let scope = if self.whole_function { "the function" } else { "the span's line" };
        format!(
            "{} lines {} ({scope}); this commit last changed {}",
            self.path,
            self.lines,
            ranges_text(&self.changed_lines)
        )
    }
}

/// `[8, 9, 10, 14]` as "8-10, 14".
pub fn ranges_text(lines: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let mut j = i;
        while j + 1 < lines.len() && lines[j + 1] == lines[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            lines[i].to_string()
        } else {
            format!("{}-{}", lines[i], lines[j])
        });
        i = j + 1;
    }
    if parts.is_empty() {
        "no line".into()
    } else {
        format!("line{} {}", if lines.len() == 1 { "" } else { "s" }, parts.join(", "))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StatusJ {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EventJ {
    pub name: String,
    pub time: String,
    pub attributes: serde_json::Map<String, Json_>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SpanJ {
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub redacted: bool,
    pub name: String,
    pub kind: String,
    pub service: String,
    pub environment: Option<String>,
    pub start_time: String,
    pub start_time_unix_nanos: String,
    pub duration_ms: f64,
    pub status: StatusJ,
    pub attributes: serde_json::Map<String, Json_>,
    pub code: serde_json::Map<String, Json_>,
    pub events: Vec<EventJ>,
    pub links: Vec<LinkJ>,
    pub resource: ResourceJ,
    pub change: Option<ChangeJ>,
}

/// A span's link to a span of another (or the same) trace.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LinkJ {
    pub trace_id: String,
    pub span_id: String,
    pub attributes: serde_json::Map<String, Json_>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResourceJ {
    pub attributes: serde_json::Map<String, Json_>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct DeployJ {
    pub id: u64,
    pub service: String,
    pub environment: Option<String>,
    pub version: String,
    pub commit_sha: Option<String>,
    pub commit: Option<CommitJ>,
    pub started_at: String,
    pub deployer: Option<String>,
    pub is_rollback: bool,
    pub url: Option<String>,
    pub source: String,
    /// The forge event that reported it.
    pub forge_event: Option<ForgeEventJ>,
    pub previous: Option<PreviousJ>,
    pub range: Option<RangeJ>,
    /// Commit impact only: how the deploy shipped the commit.
    pub shipped_as: Option<String>,
    pub traces_after: Option<String>,
    pub traces_before: Option<String>,
}

impl DeployJ {
    /// The pipeline link, only when it is an http(s) address (a `javascript:` one stored by
    /// an older version is not rendered as a link), and not the forge event's own link.
    pub fn pipeline_link(&self) -> Option<&str> {
        let event_url = self.forge_event.as_ref().and_then(|e| e.url.as_deref());
        self.url
            .as_deref()
            .filter(|url| crate::deploys::is_web_url(url))
            .filter(|url| Some(*url) != event_url)
    }

    /// Where the deploy was learnt from, in words: the forge event, a report, the spans.
    pub fn origin(&self) -> String {
        let seen_in_spans = self.source == "explicit+inferred";
        match (&self.forge_event, self.source.as_str()) {
            (Some(event), _) if seen_in_spans => format!("{}, and spans", event.description),
            (Some(event), _) => event.description.clone(),
            (None, "explicit") => "a report (API or CLI)".into(),
            (None, "inferred") => "spans of a new version".into(),
            (None, "explicit+inferred") => "a report (API or CLI), and spans".into(),
            (None, other) => other.to_owned(),
        }
    }

    pub fn environment(&self) -> &str {
        self.environment.as_deref().unwrap_or("(none)")
    }

    pub fn when(&self) -> String {
        short_time(&self.started_at)
    }

    pub fn service_href(&self) -> String {
        service_href(&self.service)
    }

    /// The UI's trace searches for the links the API gave (`/api/v1/traces?...`).
    pub fn ui_after(&self) -> Option<String> {
        self.traces_after.as_ref().map(|l| l.replacen("/api/v1/traces", "/traces", 1) + "&last=7d")
    }

    pub fn ui_before(&self) -> Option<String> {
        self.traces_before.as_ref().map(|l| l.replacen("/api/v1/traces", "/traces", 1) + "&last=7d")
    }

    /// The search for this deploy's version.
    pub fn traces_href(&self) -> String {
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
pub fn service_href(name: &str) -> String {
    format!("/services/{}", query_escape(name))
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ForgeEventJ {
    pub forge: String,
    pub kind: String,
    pub id: String,
    pub url: Option<String>,
    /// `GitHub deployment 145988746`.
    pub description: String,
}

impl ForgeEventJ {
    /// The event's page, only when it is an http(s) address.
    pub fn link(&self) -> Option<&str> {
        self.url.as_deref().filter(|url| crate::deploys::is_web_url(url))
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct PreviousJ {
    pub id: u64,
    pub version: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct RangeJ {
    pub from: String,
    pub to: String,
    pub commits: Vec<RangeCommitJ>,
    pub truncated: bool,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct RangeCommitJ {
    pub sha: String,
    pub subject: String,
    pub author: Option<String>,
}

impl RangeCommitJ {
    pub fn short(&self) -> &str {
        self.sha.get(..10).unwrap_or(&self.sha)
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct SideJ {
    pub spans: u64,
    pub value_ms: Option<f64>,
    pub error_rate: Option<f64>,
    pub errors: Option<u64>,
    pub error_types: Option<u64>,
}

impl SideJ {
    /// The value in the metric's unit.
    pub fn value_text(&self) -> String {
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
pub struct EffectJ {
    pub kind: String,
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct SuspectJ {
    pub commit: CommitJ,
    pub score: f64,
    pub reasons: Vec<String>,
    pub files: Vec<String>,
    pub review: Option<ReviewJ>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ExemplarJ {
    pub trace_id: String,
    pub duration_ms: f64,
    pub version: Option<String>,
    pub start: String,
}

impl ExemplarJ {
    pub fn duration_text(&self) -> String {
        let version = self.version.as_deref().map(|v| format!(", version {v}")).unwrap_or_default();
        format!("{}{version}, {}", ms_text(self.duration_ms), short_time(&self.start))
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ExemplarSideJ {
    pub typical: Option<ExemplarJ>,
    pub slowest: Option<ExemplarJ>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ExemplarsJ {
    pub before: ExemplarSideJ,
    pub after: ExemplarSideJ,
}

impl ExemplarsJ {
    /// The page comparing the typical trace before with the typical trace after.
    pub fn compare_url(&self) -> Option<String> {
        let (before, after) = (self.before.typical.as_ref()?, self.after.typical.as_ref()?);
        Some(format!("/compare?a={}&b={}", before.trace_id, after.trace_id))
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct RollbackJ {
    pub previous_version: Option<String>,
    pub revert_commits: Vec<String>,
    pub commands: Vec<String>,
    pub patch: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct CodeLocationJ {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<i64>,
    pub share: f64,
}

impl CodeLocationJ {
    pub fn share_text(&self) -> String {
        percent_text(self.share)
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ChildChangeJ {
    pub name: String,
    pub before_per_parent: f64,
    pub after_per_parent: f64,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct SlowAttributeJ {
    pub key: String,
    pub value: String,
    pub slow_share: f64,
    pub fast_share: f64,
}

impl SlowAttributeJ {
    pub fn slow_text(&self) -> String {
        percent_text(self.slow_share)
    }

    pub fn fast_text(&self) -> String {
        percent_text(self.fast_share)
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct EvidenceJ {
    pub code_locations: Vec<CodeLocationJ>,
    pub child_changes: Vec<ChildChangeJ>,
    pub slow_attributes: Vec<SlowAttributeJ>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct FindingJ {
    pub id: u64,
    pub deploy_id: u64,
    pub service: String,
    pub environment: Option<String>,
    pub operation: String,
    pub span_kind: String,
    pub metric: String,
    pub verdict: String,
    /// `major`, or `minor` (real, under the floors; see `minor_reason`).
    pub severity: String,
    pub minor_reason: Option<String>,
    pub status: String,
    pub is_final: bool,
    pub look_minutes: u64,
    pub first_seen: String,
    pub status_by: Option<String>,
    pub status_note: Option<String>,
    pub status_changed: Option<String>,
    pub before: SideJ,
    pub after: SideJ,
    pub effect: Option<EffectJ>,
    pub confidence: Option<f64>,
    pub p_value: Option<f64>,
    pub reason: Option<String>,
    pub guard: Option<String>,
    pub suspects: Vec<SuspectJ>,
    pub exemplars: Option<ExemplarsJ>,
    pub evidence: Option<EvidenceJ>,
    pub rollback: Option<RollbackJ>,
    pub deploy: Option<DeployJ>,
    pub notifications: Vec<NotificationJ>,
}

/// An incident as the incidents API lists it: a deploy's regressions as one.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct IncidentJ {
    pub id: u64,
    pub service: String,
    pub environment: Option<String>,
    pub version: String,
    pub deployed_at: Option<String>,
    pub status: String,
    pub status_by: Option<String>,
    pub status_note: Option<String>,
    pub first_seen: String,
    pub regression_count: usize,
    pub operations: Vec<String>,
    /// The regression that speaks for the incident (an explained one on the entry point).
    pub lead: Option<FindingJ>,
    pub status_changed: Option<String>,
    // In full (`GET /api/v1/incidents/{id}`) only:
    pub deploy: Option<DeployJ>,
    pub regressions: Vec<FindingJ>,
    pub suspects: Vec<SuspectJ>,
    pub exemplars: Option<ExemplarsJ>,
    pub rollback: Option<RollbackJ>,
    pub explained_by_finding: Option<u64>,
}

impl IncidentJ {
    pub fn environment(&self) -> &str {
        self.environment.as_deref().unwrap_or("(none)")
    }

    pub fn when(&self) -> String {
        short_time(&self.first_seen)
    }

    pub fn service_href(&self) -> String {
        service_href(&self.service)
    }

    /// "and 5 more regressions (in /cart/checkout, apply_promotions)" after the lead one.
    pub fn more_text(&self) -> String {
        match self.regression_count.saturating_sub(1) {
            0 => String::new(),
            n => format!(
                "and {n} more regression{} (in {})",
                if n == 1 { "" } else { "s" },
                self.operations.join(", ")
            ),
        }
    }
}

/// One notification of a finding, as `notify::delivery_view` writes it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct NotificationJ {
    pub sink: String,
    pub kind: String,
    pub target: String,
    pub state: String,
    pub attempts: u32,
    pub next_attempt: Option<String>,
    pub last_error: Option<String>,
    /// What it made there: `D43 https://phab.example.com/D43`.
    pub result: Option<String>,
}

impl NotificationJ {
    /// The result as a link (its name and http(s) address), when it has one.
    pub fn result_link(&self) -> Option<(&str, &str)> {
        let (name, url) = self.result.as_deref()?.split_once(' ')?;
        crate::deploys::is_web_url(url).then_some((name, url))
    }

    /// "1 attempt", "3 attempts, next at 10:04:05 UTC".
    pub fn attempts_text(&self) -> String {
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
    pub fn environment(&self) -> &str {
        self.environment.as_deref().unwrap_or("(none)")
    }

    pub fn when(&self) -> String {
        short_time(&self.first_seen)
    }

    pub fn service_href(&self) -> String {
        service_href(&self.service)
    }

    /// One side's value in the metric's unit.
    pub fn side_text(&self, before: bool) -> String {
        let side = if before { &self.before } else { &self.after };
        match side.errors {
            Some(errors) if side.error_rate.is_some() => {
                format!("{} ({errors} errors)", side.value_text())
            }
            _ => side.value_text(),
        }
    }

    pub fn confidence_text(&self, confidence: &f64) -> String {
        let text = format!("{:.4}", confidence * 100.0);
        format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
    }

    pub fn p_text(&self) -> String {
        match self.p_value {
            Some(p) if p <= 1e-13 => "below 1e-13".into(),
            Some(p) if p < 0.001 => format!("{p:.1e}"),
            Some(p) => format!("{p:.3}"),
            None => "—".into(),
        }
    }

    /// "p95 latency", "error rate", ...
    pub fn metric_name(&self) -> String {
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
    pub fn change_text(&self) -> String {
        format!("{} → {}", self.before.value_text(), self.after.value_text())
    }

    /// "×1.90 (1.75 to 2.01)" or "+1.2 points (0.4 to 2.0)".
    pub fn effect_text(&self) -> String {
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
    pub fn moved(&self) -> bool {
        self.verdict == "regressed" || self.verdict == "improved"
    }

    pub fn top_suspect(&self) -> Option<&SuspectJ> {
        self.suspects.first()
    }
}

pub fn read<T: for<'de> Deserialize<'de> + Default>(value: Json_) -> T {
    serde_json::from_value(value).unwrap_or_default()
}

/// `2026-11-21 13:10:04 UTC` from RFC 3339.
pub fn short_time(rfc3339: &str) -> String {
    rfc3339
        .parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| rfc3339.to_owned())
}

pub fn unix_secs(rfc3339: &str) -> Option<f64> {
    rfc3339.parse::<jiff::Timestamp>().ok().map(|t| t.as_nanosecond() as f64 / 1e9)
}

pub fn ms_text(ms: f64) -> String {
    if ms >= 1000.0 { format!("{:.2} s", ms / 1000.0) } else { format!("{} ms", short_number(ms)) }
}

pub fn percent_text(fraction: f64) -> String {
    format!("{}%", short_number(fraction * 100.0))
}

/// A number for an axis: no trailing zeros, at most three significant digits.
pub fn short_number(value: f64) -> String {
    let text = if value >= 100.0 || value == 0.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else if value >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}
