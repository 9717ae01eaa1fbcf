//! Findings, incidents and their notifications, as typed values.

use serde::{Deserialize, Serialize};

use crate::changes::{CommitJ, ReviewJ};
use crate::deploys::DeployJ;
use crate::words::{is_web_url, ms_text, percent_text, service_href, short_time};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SideJ {
    pub spans: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
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

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EffectJ {
    pub kind: String,
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SuspectJ {
    pub commit: CommitJ,
    pub score: f64,
    pub reasons: Vec<String>,
    pub files: Vec<String>,
    pub review: Option<ReviewJ>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ExemplarJ {
    pub trace_id: String,
    pub span_id: String,
    pub duration_ms: f64,
    pub start: String,
    pub version: Option<String>,
    /// The trace in the API.
    pub url: String,
}

impl ExemplarJ {
    pub fn duration_text(&self) -> String {
        let version = self.version.as_deref().map(|v| format!(", version {v}")).unwrap_or_default();
        format!("{}{version}, {}", ms_text(self.duration_ms), short_time(&self.start))
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ExemplarSideJ {
    pub slowest: Option<ExemplarJ>,
    pub typical: Option<ExemplarJ>,
    pub sampled_spans: usize,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RollbackJ {
    pub previous_version: Option<String>,
    pub previous_deploy_id: Option<u64>,
    pub revert_commits: Vec<String>,
    pub commands: Vec<String>,
    pub patch: Option<String>,
    /// `git apply -R`.
    pub patch_applies_with: String,
    pub note: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ChildChangeJ {
    pub name: String,
    pub before_per_parent: f64,
    pub after_per_parent: f64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EvidenceJ {
    pub code_locations: Vec<CodeLocationJ>,
    pub child_changes: Vec<ChildChangeJ>,
    pub slow_attributes: Vec<SlowAttributeJ>,
}

/// What detection measured (stored with the finding when it is made; units in the names).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NumbersJ {
    /// `before_deploy` or `other_versions_same_minutes`.
    pub baseline: String,
    pub before: SideJ,
    pub after: SideJ,
    pub effect: Option<EffectJ>,
    pub confidence: Option<f64>,
    pub p_value: Option<f64>,
    pub tests_in_look: Option<u64>,
    /// Why an inconclusive comparison could not tell.
    pub reason: Option<String>,
    pub guard: Option<String>,
    pub new_error_types: Vec<String>,
    /// Why a real regression is minor (under the floors).
    pub minor_reason: Option<String>,
    /// The look, as findings made before this field moved to the row wrote it; never shown
    /// (the finding's own `look_minutes` is the row's).
    #[serde(skip_serializing)]
    pub look_minutes: Option<u32>,
}

/// Why a regression happened, as explaining it found (stored once it is explained).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ExplanationJ {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exemplars: Option<ExemplarsJ>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceJ>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspects: Option<Vec<SuspectJ>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranking: Option<RankingJ>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackJ>,
}

/// How the deploy's range was ranked: whether one suspect stands apart, the bisect plan and
/// the range; or why the range could not be read.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RankingJ {
    pub separated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bisect: Option<BisectJ>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<RangeSummaryJ>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// How to find the culprit by canarying commits, halving the range each round.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BisectJ {
    pub canary: String,
    pub first_half: Vec<String>,
    pub max_rounds: u32,
    pub text: String,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RangeSummaryJ {
    pub repository: String,
    /// Commits in the range.
    pub commits: usize,
    pub truncated: bool,
    pub is_rollback: bool,
}

/// A finding as the findings API shows it: in a list without the heavy parts (evidence,
/// ranking, rollback, more than three suspects), in full with its deploy and notifications.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FindingJ {
    pub id: u64,
    pub url: String,
    pub deploy_id: u64,
    pub service: String,
    pub environment: Option<String>,
    pub operation: String,
    pub span_kind: String,
    pub metric: String,
    pub verdict: String,
    /// `major`, or `minor` (real, under the floors; see `minor_reason`).
    pub severity: String,
    pub status: String,
    pub is_final: bool,
    pub look_minutes: u32,
    pub first_seen: String,
    pub updated: String,
    pub status_changed: Option<String>,
    pub status_by: Option<String>,
    pub status_note: Option<String>,
    #[serde(flatten)]
    pub numbers: NumbersJ,
    #[serde(flatten)]
    pub explanation: ExplanationJ,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeployJ>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notifications: Option<Vec<NotificationJ>>,
}

/// An incident as the incidents API lists it: a deploy's regressions as one.
#[derive(Debug, Default, Clone, Serialize)]
pub struct IncidentJ {
    /// Its deploy's id.
    pub id: u64,
    pub url: String,
    pub service: String,
    pub environment: Option<String>,
    pub version: String,
    pub deployed_at: Option<String>,
    pub status: String,
    pub status_by: Option<String>,
    pub status_note: Option<String>,
    pub status_changed: Option<String>,
    pub first_seen: String,
    pub regression_count: usize,
    pub operations: Vec<String>,
    /// The regression that speaks for the incident (an explained one on the entry point).
    pub lead: Option<FindingJ>,
    pub finding_ids: Vec<u64>,
    // In full (`GET /api/v1/incidents/{id}`) only:
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeployJ>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regressions: Option<Vec<FindingJ>>,
    /// The lead finding's explanation, when it has one.
    #[serde(flatten)]
    pub explanation: ExplanationJ,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explained_by_finding: Option<u64>,
}

impl IncidentJ {
    /// The table of regressions (only an incident asked for by id lists them).
    pub fn regressions(&self) -> &[FindingJ] {
        self.regressions.as_deref().unwrap_or_default()
    }

    /// The lead finding's suspects (none before it is explained).
    pub fn suspects(&self) -> &[SuspectJ] {
        self.explanation.suspects.as_deref().unwrap_or_default()
    }

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

/// One delivery of the outbox (an alert, a comment, a status), as the notifications API and
/// a finding show it; never its request, which may name internal paths.
#[derive(Debug, Default, Clone, Serialize)]
pub struct NotificationJ {
    pub id: u64,
    pub sink: String,
    pub kind: String,
    pub target: String,
    pub summary: String,
    pub state: String,
    pub attempts: u32,
    pub finding_id: Option<u64>,
    pub deploy_id: Option<u64>,
    pub created: String,
    pub next_attempt: Option<String>,
    pub finished: Option<String>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// What it made there: `D43 https://phab.example.com/D43`.
    pub result: Option<String>,
}

impl NotificationJ {
    /// The result as a link (its name and http(s) address), when it has one.
    pub fn result_link(&self) -> Option<(&str, &str)> {
        let (name, url) = self.result.as_deref()?.split_once(' ')?;
        is_web_url(url).then_some((name, url))
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
        let side = if before { &self.numbers.before } else { &self.numbers.after };
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
        match self.numbers.p_value {
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
        format!("{} → {}", self.numbers.before.value_text(), self.numbers.after.value_text())
    }

    /// "×1.90 (1.75 to 2.01)" or "+1.2 points (0.4 to 2.0)".
    pub fn effect_text(&self) -> String {
        match &self.numbers.effect {
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
        self.suspects().first()
    }

    /// The suspects (none before it is explained).
    pub fn suspects(&self) -> &[SuspectJ] {
        self.explanation.suspects.as_deref().unwrap_or_default()
    }

    /// Its notifications (only a finding asked for by id lists them).
    pub fn notifications(&self) -> &[NotificationJ] {
        self.notifications.as_deref().unwrap_or_default()
    }
}

/// A revert proposed on the forge (`POST /api/v1/findings/{id}/revert`, MCP's
/// `propose_revert`): the notification that carries it, and where to follow it.
#[derive(Debug, Clone, Serialize)]
pub struct RevertProposedJ {
    /// `queued`, or `already proposed` (the same revert was asked for before).
    pub status: &'static str,
    /// `revert of D7`, `revert of commit 1a2b3c4d5e`.
    pub target: String,
    pub integration: String,
    /// The commits reverted, newest first.
    pub commits: Vec<String>,
    /// The notification that opens it on the forge.
    pub notification: u64,
    pub idempotency_key: String,
    pub message: String,
}
