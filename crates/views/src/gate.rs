//! The tagging gate over what spanblame knows: the facts [`analysis::gate`] decides on (the
//! commit and its review from the change graph and the mirror, the `[[services]]` entry, the
//! versions the service's spans showed in the environments looked in) and its report as the
//! API, the command line, Harbormaster and commit statuses show it.

use analysis::gate::{Facts, Mapping, Outcome, Report, ReviewLink, VersionSeen};
use store::{GateResult, StoreError};

use crate::changes::{ChangeResolver, resolve_commit};
use crate::{Context, Visibility, rfc3339};
use shapes::{GateCheckJ, GateJ};

/// What the gate is asked about.
#[derive(Debug, Clone, Default)]
pub struct GateRequest {
    pub service: String,
    /// The head commit (full or at least 7 hex digits); `None` for a diff not landed yet.
    pub commit: Option<String>,
    /// Where to look for spans; else `[gate] environments`.
    pub environment: Option<String>,
    /// The review the request comes from (a Harbormaster build of `D12`, a pull request):
    /// its id, and how it is known.
    pub review: Option<(String, String)>,
    /// Whether the change should be running already (a check after a deploy to staging), or
    /// is still under review.
    pub expect_head: bool,
}

/// The gate's report for one service.
pub fn evaluate(ctx: &Context, request: &GateRequest) -> Result<Report, StoreError> {
    let facts = facts(ctx, request)?;
    Ok(analysis::gate::evaluate(&facts, &ctx.changes.gate))
}

/// The full sha of the request's commit, when the service's repository (or any) knows it.
pub fn full_sha(ctx: &Context, request: &GateRequest) -> Result<Option<String>, StoreError> {
    let Some(sha) = &request.commit else { return Ok(None) };
    Ok(resolve_commit(ctx, Some(sha), &request.service, None)?.map(|c| c.commit.sha))
}

/// What the gate decides on.
pub fn facts(ctx: &Context, request: &GateRequest) -> Result<Facts, StoreError> {
    let service = request.service.as_str();
    let rules = &ctx.changes.gate;
    let environments = match &request.environment {
        Some(environment) => vec![environment.clone()],
        None => rules.environments.clone(),
    };
    Ok(Facts {
        service: service.to_owned(),
        commit: request.commit.clone(),
        review: review_link(ctx, request)?,
        mapping: mapping(ctx, service),
        seen: seen(ctx, service, &environments, rules.window_nanos)?,
        environments,
        expect_head: request.expect_head,
        window_nanos: rules.window_nanos,
    })
}

fn review_link(ctx: &Context, request: &GateRequest) -> Result<ReviewLink, StoreError> {
    if let Some((id, how)) = &request.review {
        return Ok(ReviewLink::Found { id: id.clone(), how: how.clone() });
    }
    let Some(sha) = &request.commit else {
        return Ok(ReviewLink::Unknown("no commit or review was named".into()));
    };
    let Some(stored) = resolve_commit(ctx, Some(sha), &request.service, None)? else {
        let repository = ctx
            .changes
            .ownership(&request.service)
            .and_then(|o| o.repository.clone())
            .map_or_else(|| "any repository".to_owned(), |r| format!("`{r}`"));
        return Ok(ReviewLink::Unknown(format!(
            "commit {} is not in {repository} yet: push it, or wait for the mirror's next fetch",
            short(sha)
        )));
    };
    let Some(review) = ChangeResolver::new(ctx).review(&stored)? else {
        return Ok(ReviewLink::Missing);
    };
    // As the forge names it: `D12`, `PR #42`, `MR !7`.
    let id = review.label();
    let kind = review.kind.as_str();
    let how = if stored.commit.message.contains("Differential Revision:") {
        "the commit's `Differential Revision:` line".to_owned()
    } else {
        let what = match kind {
            "gitlab" => "merge request",
            "phabricator" => "revision",
            _ => "pull request",
        };
        format!("a {what} that holds the commit")
    };
    Ok(ReviewLink::Found { id, how })
}

fn mapping(ctx: &Context, service: &str) -> Option<Mapping> {
    let ownership = ctx.changes.ownership(service)?;
    let neighbours = ctx
        .changes
        .services
        .iter()
        .filter(|s| s.service != service && s.repository.is_some())
        .filter(|s| s.repository == ownership.repository)
        .map(|s| s.service.clone())
        .collect();
    Some(Mapping {
        repository: ownership.repository.clone(),
        path_prefix: ownership.path_prefix.clone(),
        owner: ChangeResolver::new(ctx).owner(service, ownership.path_prefix.as_deref()),
        neighbours,
    })
}

/// The service's versions seen in `environments` within the window, with the commit their
/// spans name or their version resolves to.
fn seen(
    ctx: &Context,
    service: &str,
    environments: &[String],
    window_nanos: u64,
) -> Result<Vec<VersionSeen>, StoreError> {
    if environments.is_empty() {
        return Ok(Vec::new());
    }
    let since = ctx.clock.now_unix_nanos().saturating_sub(window_nanos);
    let Some(summary) = ctx.store.services()?.into_iter().find(|s| s.name == service) else {
        return Ok(Vec::new());
    };
    let mut seen = Vec::new();
    for v in summary.versions {
        let Some(environment) = v.environment.filter(|e| environments.contains(e)) else {
            continue;
        };
        if v.last_seen_unix_nanos < since {
            continue;
        }
        let version = v.version.unwrap_or_default();
        let commit_attribute = match version.as_str() {
            "" => None,
            version => ctx.store.version_commit(service, version)?,
        };
        let resolves_to = match (&commit_attribute, version.as_str()) {
            (None, version) if !version.is_empty() => {
                resolve_commit(ctx, None, service, Some(version))?.map(|c| c.commit.sha)
            }
            _ => None,
        };
        seen.push(VersionSeen {
            environment,
            version,
            num_spans: v.num_spans,
            last_seen_unix_nanos: v.last_seen_unix_nanos,
            commit_attribute,
            resolves_to,
        });
    }
    Ok(seen)
}

/// The report as the API answers it.
pub fn report_view(request: &GateRequest, report: &Report) -> GateJ {
    let checks = report
        .checks
        .iter()
        .map(|c| GateCheckJ {
            name: c.check.name().into(),
            title: c.check.title().into(),
            outcome: c.outcome.as_str().into(),
            required: c.required,
            found: c.found.clone(),
            fix: c.fix.clone(),
        })
        .collect();
    GateJ {
        outcome: report.outcome.as_str().into(),
        service: request.service.clone(),
        commit: request.commit.clone(),
        review: request.review.as_ref().map(|(id, _)| id.clone()),
        environment: request.environment.clone(),
        summary: summary(report),
        checks,
        asked_by: String::new(),
        evaluated_at: String::new(),
    }
}

/// The row that records this answer (`source`: `api`, `harbormaster` or `review`); the
/// caller writes it.
pub fn result_row(request: &GateRequest, report: &Report, source: &str, now: u64) -> GateResult {
    GateResult {
        service: request.service.clone(),
        commit_sha: request.commit.clone().unwrap_or_default(),
        review_id: request.review.as_ref().map(|(id, _)| id.clone()).unwrap_or_default(),
        source: source.to_owned(),
        outcome: report.outcome.as_str().to_owned(),
        report: serde_json::to_string(&report_view(request, report)).expect("a report serialises"),
        evaluated_unix_nanos: now,
    }
}

/// The gate's last answers about a commit or its review (a Harbormaster build of the diff
/// before it landed), for the services the caller may see: the API's `gate` list (each report
/// with who asked and when).
pub fn commit_results(
    ctx: &Context,
    visibility: &Visibility,
    sha: &str,
) -> Result<Vec<GateJ>, StoreError> {
    let review = crate::changes::review_of_commit(ctx, sha)?.map(|review| review.label());
    let rows = ctx.store.gate_results_of_commit(sha, review.as_deref())?;
    Ok(rows
        .into_iter()
        .filter(|r| visibility.allows(&r.service, None))
        .map(|r| GateJ {
            asked_by: r.source,
            evaluated_at: rfc3339(r.evaluated_unix_nanos),
            // Written by `result_row`; a row that does not read keeps who asked and when.
            ..serde_json::from_str(&r.report).unwrap_or_default()
        })
        .collect())
}

/// One line: the outcome and what decided it.
pub fn summary(report: &Report) -> String {
    let required: Vec<_> = report.checks.iter().filter(|c| c.required).collect();
    let deciding: Vec<&str> =
        required.iter().filter(|c| c.outcome == report.outcome).map(|c| c.check.name()).collect();
    match report.outcome {
        Outcome::Pass => format!(
            "pass: {} of {} required checks pass",
            required.iter().filter(|c| c.outcome == Outcome::Pass).count(),
            required.len()
        ),
        Outcome::Fail => format!("fail: {}", deciding.join(", ")),
        Outcome::CannotTell => format!("cannot tell yet: {}", deciding.join(", ")),
        Outcome::Skipped => "skipped".into(),
    }
}

fn short(sha: &str) -> String {
    sha.chars().take(12).collect()
}
