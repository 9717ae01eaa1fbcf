//! Findings (`GET /api/v1/findings`, `GET /api/v1/findings/{id}`): newest first within the
//! caller's reach, in lists without the heavy parts, and in full (numbers, intervals,
//! exemplars, suspects, rollback, the deploy and its notifications).

use analysis::WindowStats;
use analysis::detect::Baseline;
use store::{FindingFilter, FindingStatus, StoreError, StoredFinding};

use crate::{Context, Invalid, Visibility, rfc3339};
use shapes::{ExplanationJ, FindingJ, NumbersJ};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;
const VERDICTS: [&str; 4] = ["regressed", "improved", "no_change", "inconclusive"];

/// Findings matching `filter` within the caller's reach, newest first, without the heavy
/// parts.
pub fn list(
    ctx: &Context,
    visibility: &Visibility,
    mut filter: FindingFilter,
) -> Result<Vec<FindingJ>, StoreError> {
    (filter.allowed_services, filter.allowed_environments) = crate::reach(visibility);
    Ok(ctx.store.findings(&filter)?.iter().map(|f| view(f, false)).collect())
}

pub fn parse_filter(params: Vec<(String, String)>) -> Result<FindingFilter, Invalid> {
    let mut filter = FindingFilter { limit: DEFAULT_LIMIT, ..FindingFilter::default() };
    for (key, value) in params {
        match key.as_str() {
            "service" => filter.service = Some(value),
            "environment" => filter.environment = Some(value),
            "verdict" => {
                if !VERDICTS.contains(&value.as_str()) {
                    return Err(Invalid::new(format!(
                        "`verdict` = `{value}` is not one of {}",
                        VERDICTS.join(", ")
                    )));
                }
                filter.verdict = Some(value);
            }
            "severity" => {
                if !["major", "minor"].contains(&value.as_str()) {
                    return Err(Invalid::new(format!(
                        "`severity` = `{value}` is not one of major, minor"
                    )));
                }
                filter.severity = Some(value);
            }
            "status" => {
                filter.status = Some(FindingStatus::parse(&value).ok_or_else(|| {
                    Invalid::new(format!(
                        "`status` = `{value}` is not one of open, acknowledged, resolved"
                    ))
                })?);
            }
            "since" => {
                let time = value
                    .parse::<jiff::Timestamp>()
                    .ok()
                    .and_then(|t| u64::try_from(t.as_nanosecond()).ok());
                filter.since_unix_nanos = Some(time.ok_or_else(|| {
                    Invalid::new(format!("`since` = `{value}` is not an RFC 3339 time; write it like `2026-11-21T09:30:00Z`"))
                })?);
            }
            "limit" => {
                filter.limit =
                    value.parse().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(
                        || Invalid::new(format!("`limit` must be between 1 and {MAX_LIMIT}")),
                    )?;
            }
            "next" => {
                filter.before_id = Some(value.parse().map_err(|_| {
                    Invalid::new(format!("`next` = `{value}` is not a cursor from a previous page"))
                })?);
            }
            other => {
                return Err(Invalid::new(format!(
                    "unknown parameter `{other}`; use service, environment, verdict, severity, status, since, limit or next"
                )));
            }
        }
    }
    Ok(filter)
}

/// Everything about one finding, with its deploy; `None` when the caller may not see it.
pub fn finding(
    ctx: &Context,
    visibility: &Visibility,
    id: u64,
) -> Result<Option<FindingJ>, StoreError> {
    // A finding the caller may not see does not exist for them.
    let Some(finding) = ctx.store.finding(id)?.filter(|f| may_see_finding(visibility, f)) else {
        return Ok(None);
    };
    let mut full = full_view(ctx, &finding)?;
    full.notifications = Some(crate::notifications::finding_notifications(ctx, &finding)?);
    Ok(Some(full))
}

/// A finding with everything about it and its deploy, for whoever may see it.
pub fn full_view(ctx: &Context, finding: &StoredFinding) -> Result<FindingJ, StoreError> {
    let mut full = view(finding, true);
    if let Some(deploy) = ctx.store.deploy(finding.deploy_id)? {
        full.deploy = Some(crate::deploys::deploy_view(ctx, &deploy)?);
    }
    Ok(full)
}

/// A finding's status as the API and the pages show it: a regression is open, acknowledged
/// or resolved; any other verdict (no change, improved, inconclusive) asks nothing of anyone
/// and has status `none`.
pub fn status_label(finding: &StoredFinding) -> &'static str {
    if finding.verdict == "regressed" { finding.status.as_str() } else { "none" }
}

/// What detection measured, read from the finding's stored detail.
pub fn numbers(finding: &StoredFinding) -> NumbersJ {
    serde_json::from_str(&finding.detail).unwrap_or_default()
}

/// A finding; a list leaves out the heavy parts (evidence, ranking, rollback, all but the
/// top three suspects).
pub fn view(finding: &StoredFinding, full: bool) -> FindingJ {
    let mut explanation: ExplanationJ = finding
        .explanation
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    if finding.verdict == "regressed" && explanation.suspects.is_none() {
        explanation.suspects = Some(Vec::new());
    }
    if !full {
        explanation.evidence = None;
        explanation.rollback = None;
        explanation.ranking = None;
        if let Some(suspects) = &mut explanation.suspects {
            suspects.truncate(3);
        }
    }
    FindingJ {
        id: finding.id,
        url: format!("/api/v1/findings/{}", finding.id),
        deploy_id: finding.deploy_id,
        service: finding.service.clone(),
        environment: Some(finding.environment.clone()).filter(|e| !e.is_empty()),
        operation: finding.operation.clone(),
        span_kind: finding.span_kind.clone(),
        metric: finding.metric.clone(),
        verdict: finding.verdict.clone(),
        severity: finding.severity.clone(),
        status: status_label(finding).into(),
        is_final: finding.is_final,
        look_minutes: finding.look_minutes,
        first_seen: rfc3339(finding.first_seen_unix_nanos),
        updated: rfc3339(finding.updated_unix_nanos),
        status_changed: finding.status_changed_unix_nanos.map(rfc3339),
        status_by: finding.status_by.clone(),
        status_note: finding.status_note.clone(),
        numbers: numbers(finding),
        explanation,
        deploy: None,
        notifications: None,
    }
}

/// The two sides a finding compares, read from the sketches as detection read them at the
/// finding's look (the baseline, before or beside the deploy, and the deployed version);
/// `None` when the caller may not see it or its deploy is gone.
pub fn compared_sides(
    ctx: &Context,
    visibility: &Visibility,
    id: u64,
    before_window_minutes: u32,
) -> Result<Option<(Baseline, WindowStats, WindowStats)>, StoreError> {
    let Some(finding) = ctx.store.finding(id)?.filter(|f| may_see_finding(visibility, f)) else {
        return Ok(None);
    };
    let Some(deploy) = ctx.store.deploy(finding.deploy_id)? else { return Ok(None) };
    let windows = crate::sketches::deploy_windows(
        ctx,
        &deploy,
        finding.look_minutes,
        before_window_minutes,
        false,
    )?;
    Ok(windows
        .iter()
        .find(|op| op.operation == finding.operation && op.span_kind == finding.span_kind)
        .map(analysis::detect::sides))
}

/// Whether the caller may see a finding: it is about a service (and environment) they see.
pub fn may_see_finding(visibility: &Visibility, finding: &StoredFinding) -> bool {
    let environment = Some(finding.environment.as_str()).filter(|e| !e.is_empty());
    visibility.allows(&finding.service, environment)
}
