//! Incidents (`GET /api/v1/incidents`, `GET /api/v1/incidents/{id}`): a deploy's regressed
//! findings as one thing to act on. One bad commit slows several operations at several
//! percentiles; the on-call engineer acknowledges and resolves the deploy's regression once,
//! sees the suspects once, and reads the operations × metrics as one table.
//!
//! An incident's id is its deploy's. Its status is its regressed findings': open while any is
//! open, acknowledged while any is acknowledged and none is open, else resolved. Findings
//! whose verdict is `no_change`, `improved` or `inconclusive` are not part of it.

use store::{FindingFilter, FindingStatus, StoreError, StoredFinding};

use crate::{Context, Invalid, Visibility, rfc3339};
use shapes::IncidentJ;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;
/// Regressed findings read per listing at most (incidents are built from them).
const MAX_FINDINGS: usize = 5_000;

/// Which incidents a listing wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentFilter {
    pub service: Option<String>,
    pub environment: Option<String>,
    /// `None`: every status.
    pub status: Option<FindingStatus>,
    pub limit: usize,
}

/// The listing's query parameters; `status` is `open` unless given (`all` for every status).
pub fn parse_filter(params: Vec<(String, String)>) -> Result<IncidentFilter, Invalid> {
    // Open ones unless asked otherwise: what needs someone now.
    let mut filter = IncidentFilter {
        status: Some(FindingStatus::Open),
        limit: DEFAULT_LIMIT,
        ..IncidentFilter::default()
    };
    for (key, value) in params {
        match key.as_str() {
            "service" => filter.service = Some(value),
            "environment" => filter.environment = Some(value),
            "status" => {
                filter.status = match value.as_str() {
                    "all" => None,
                    other => Some(FindingStatus::parse(other).ok_or_else(|| {
                        Invalid::new(format!(
                            "`status` = `{other}` is not one of open, acknowledged, resolved, all"
                        ))
                    })?),
                }
            }
            "limit" => {
                filter.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| Invalid::new(format!("`limit` must be 1 to {MAX_LIMIT}")))?;
            }
            other => {
                return Err(Invalid::new(format!(
                    "unknown parameter `{other}`; use service, environment, status or limit"
                )));
            }
        }
    }
    Ok(filter)
}

/// Incidents within the caller's reach, newest first, in summary.
pub fn list(
    ctx: &Context,
    visibility: &Visibility,
    filter: &IncidentFilter,
) -> Result<Vec<IncidentJ>, StoreError> {
    let (allowed_services, allowed_environments) = crate::reach(visibility);
    let regressed = ctx.store.findings(&FindingFilter {
        service: filter.service.clone(),
        environment: filter.environment.clone(),
        verdict: Some("regressed".into()),
        severity: ctx.incident_severity(),
        limit: MAX_FINDINGS,
        allowed_services,
        allowed_environments,
        ..FindingFilter::default()
    })?;
    // Findings come newest first; group them by deploy in that order.
    let mut deploys: Vec<u64> = Vec::new();
    for finding in &regressed {
        if !deploys.contains(&finding.deploy_id) {
            deploys.push(finding.deploy_id);
        }
    }
    let mut incidents = Vec::new();
    for deploy_id in deploys {
        let findings: Vec<&StoredFinding> =
            regressed.iter().filter(|f| f.deploy_id == deploy_id).collect();
        let status = status_of(&findings);
        if filter.status.is_some_and(|wanted| wanted != status) {
            continue;
        }
        incidents.push(summary(ctx, deploy_id, &findings, status)?);
        if incidents.len() == filter.limit {
            break;
        }
    }
    Ok(incidents)
}

/// One incident in full: the deploy, the table of regressions, the suspects once, the
/// exemplars and the rollback draft; `None` when the deploy has no regression the caller may
/// see.
pub fn incident(
    ctx: &Context,
    visibility: &Visibility,
    deploy_id: u64,
) -> Result<Option<IncidentJ>, StoreError> {
    let findings = regressed_of(ctx, visibility, deploy_id)?;
    if findings.is_empty() {
        return Ok(None);
    }
    let refs: Vec<&StoredFinding> = findings.iter().collect();
    let status = status_of(&refs);
    let mut view = summary(ctx, deploy_id, &refs, status)?;
    if let Some(deploy) = ctx.store.deploy(deploy_id)? {
        view.deploy = Some(crate::deploys::deploy_view(ctx, &deploy)?);
    }
    // Entry points first (what callers feel), then by operation and metric.
    let mut rows = refs.clone();
    rows.sort_by(|a, b| {
        (a.span_kind != "server", &a.operation, &a.metric).cmp(&(
            b.span_kind != "server",
            &b.operation,
            &b.metric,
        ))
    });
    view.regressions = Some(rows.iter().map(|f| crate::findings::view(f, false)).collect());
    if let Some(lead) = lead(&refs).filter(|f| f.explanation.is_some()) {
        view.explanation = crate::findings::view(lead, true).explanation;
        view.explained_by_finding = Some(lead.id);
    }
    Ok(Some(view))
}

/// The regressed findings of a deploy the caller may see, oldest first.
pub fn regressed_of(
    ctx: &Context,
    visibility: &Visibility,
    deploy_id: u64,
) -> Result<Vec<StoredFinding>, StoreError> {
    let (allowed_services, allowed_environments) = crate::reach(visibility);
    let mut findings = ctx.store.findings(&FindingFilter {
        deploy_id: Some(deploy_id),
        verdict: Some("regressed".into()),
        severity: ctx.incident_severity(),
        limit: MAX_FINDINGS,
        allowed_services,
        allowed_environments,
        ..FindingFilter::default()
    })?;
    findings.reverse();
    Ok(findings)
}

/// Open while any regression is open; acknowledged while any is acknowledged; else resolved.
pub fn status_of(findings: &[&StoredFinding]) -> FindingStatus {
    let any = |status: FindingStatus| findings.iter().any(|f| f.status == status);
    if any(FindingStatus::Open) {
        FindingStatus::Open
    } else if any(FindingStatus::Acknowledged) {
        FindingStatus::Acknowledged
    } else {
        FindingStatus::Resolved
    }
}

fn summary(
    ctx: &Context,
    deploy_id: u64,
    findings: &[&StoredFinding],
    status: FindingStatus,
) -> Result<IncidentJ, StoreError> {
    let deploy = ctx.store.deploy(deploy_id)?;
    let first = findings.iter().map(|f| f.first_seen_unix_nanos).min().unwrap_or(0);
    // Who changed the status last, when, and why (the same for every finding it was set on).
    let last_change = findings
        .iter()
        .filter(|f| f.status == status && f.status_changed_unix_nanos.is_some())
        .max_by_key(|f| f.status_changed_unix_nanos);
    let mut operations: Vec<String> = Vec::new();
    for finding in findings {
        if !operations.contains(&finding.operation) {
            operations.push(finding.operation.clone());
        }
    }
    // The regression that speaks for the incident, with its top suspects.
    let lead = lead(findings).map(|f| crate::findings::view(f, false));
    // The findings name the service and environment when the deploy is gone.
    let (service, environment) = match (&deploy, findings.first()) {
        (Some(d), _) => (d.service.clone(), d.environment.clone()),
        (None, Some(f)) => (f.service.clone(), f.environment.clone()),
        (None, None) => Default::default(),
    };
    Ok(IncidentJ {
        id: deploy_id,
        url: format!("/api/v1/incidents/{deploy_id}"),
        service,
        environment: Some(environment).filter(|e| !e.is_empty()),
        version: deploy.as_ref().map(|d| d.version.clone()).unwrap_or_default(),
        deployed_at: deploy.as_ref().map(|d| rfc3339(d.started_at_unix_nanos)),
        status: status.as_str().into(),
        status_by: last_change.and_then(|f| f.status_by.clone()),
        status_note: last_change.and_then(|f| f.status_note.clone()),
        status_changed: last_change.and_then(|f| f.status_changed_unix_nanos).map(rfc3339),
        first_seen: rfc3339(first),
        regression_count: findings.len(),
        operations,
        lead,
        finding_ids: findings.iter().map(|f| f.id).collect(),
        ..IncidentJ::default()
    })
}

fn effect_of(finding: &StoredFinding) -> Option<f64> {
    crate::findings::numbers(finding).effect.map(|e| e.estimate)
}

/// The finding that speaks for the incident: explained ones first, then one on the service's
/// entry point (what callers feel), then the largest effect.
fn lead<'a>(findings: &[&'a StoredFinding]) -> Option<&'a StoredFinding> {
    // Each finding's effect is read from its stored detail once, not per comparison.
    findings
        .iter()
        .map(|f| {
            (f.explanation.is_some(), f.span_kind == "server", effect_of(f).unwrap_or(0.0), *f)
        })
        .max_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then(a.2.total_cmp(&b.2)))
        .map(|(_, _, _, f)| f)
}
