//! The tagging gate's answers on the forge, sent from the outbox (so a forge that is down gets
//! them later): a Harbormaster build step's result through Conduit's
//! `harbormaster.sendmessage`, with one unit result per service and check that names what was
//! found and the fix; and a `spanblame/tagging` commit status on each new head of a pull or
//! merge request (Gitea/Forgejo, GitHub, GitLab, with `gate_on_reviews`).

use analysis::gate::{Outcome, Report};
use store::{NewDelivery, StoreError};
use views::gate::GateRequest;

use crate::Jobs;

/// A Harbormaster "Make HTTP Request" step's call, as its URI's variables name the build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HarbormasterBuild {
    /// The `[[integrations]]` entry (kind phabricator) the step calls.
    pub integration: String,
    /// `${target.phid}`: where the result goes.
    pub target_phid: String,
    /// `${buildable.revision}`: the revision's number, when a diff of one is built.
    pub revision: Option<u64>,
    /// `${buildable.commit}`: the commit, when a landed commit is built.
    pub commit: Option<String>,
    /// `${repository.callsign}`.
    pub callsign: Option<String>,
    /// Services named in the URI (`&service=cart`); else those of the repository.
    pub services: Vec<String>,
}

/// What was decided and sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateAnswer {
    pub passed: bool,
    pub services: Vec<String>,
    /// One line per service.
    pub summary: String,
}

/// Evaluates the gate for the build's services and enqueues the result for Harbormaster.
/// A build is never left waiting: with no service to judge, it fails and says how to map one.
pub fn answer_harbormaster(
    jobs: &Jobs,
    build: &HarbormasterBuild,
) -> Result<GateAnswer, StoreError> {
    let ctx = &jobs.ctx;
    let services = if build.services.is_empty() {
        services_of_repository(jobs, build.callsign.as_deref())
    } else {
        build.services.clone()
    };
    let review = build.revision.map(|n| format!("D{n}"));
    let mut units = Vec::new();
    let mut lines = Vec::new();
    let mut passed = true;
    for service in &services {
        let request = GateRequest {
            service: service.clone(),
            commit: build.commit.clone(),
            environment: None,
            review: review.clone().map(|id| (id, "the revision Harbormaster builds".into())),
            // Under review or just landed: nothing runs it yet.
            expect_head: false,
        };
        let report = views::gate::evaluate(ctx, &request)?;
        let now = ctx.clock.now_unix_nanos();
        ctx.store.record_gate_result(&views::gate::result_row(
            &request,
            &report,
            "harbormaster",
            now,
        ))?;
        // "Cannot tell yet" (a service with no spans so far) does not block a merge.
        passed &= report.outcome != Outcome::Fail;
        lines.push(format!("{service}: {}", views::gate::summary(&report)));
        units.extend(unit_results(service, &report));
    }
    if services.is_empty() {
        passed = false;
        let repository =
            build.callsign.as_deref().map_or("this repository".into(), |c| format!("r{c}"));
        lines.push(format!("no service is mapped to {repository}"));
        units.push(forge::api::UnitResult {
            name: "service is mapped".into(),
            result: "fail",
            details: format!(
                "No `[[services]]` entry names a `[[repositories]]` entry for {repository}.\n\nFix: map the service (`[[services]]` with `repository`), or name it in the step's URI: `&service=<service.name>`."
            ),
        });
    }
    let label = match (&review, &build.commit) {
        (Some(review), _) => review.clone(),
        (None, Some(commit)) => format!("commit {}", commit.chars().take(10).collect::<String>()),
        (None, None) => build.target_phid.clone(),
    };
    let request = forge::api::harbormaster_message(&build.target_phid, passed, &units);
    let delivery = NewDelivery {
        idempotency_key: format!("gate:{}:{}", build.integration, build.target_phid),
        sink: format!("forge:{}", build.integration),
        kind: "gate".into(),
        finding_id: None,
        deploy_id: None,
        target: format!("Harbormaster build of {label}"),
        summary: format!(
            "tagging gate {} for {label}: {}",
            if passed { "passed" } else { "failed" },
            lines.join("; ")
        ),
        request: serde_json::to_string(&request).unwrap_or_default(),
        supersedes: Vec::new(),
    };
    ctx.store.enqueue_deliveries(&[delivery], ctx.clock.now_unix_nanos())?;
    Ok(GateAnswer { passed, services, summary: lines.join("; ") })
}

/// The status context the gate's commit statuses carry (a branch protection rule requires it).
pub const STATUS_CONTEXT: &str = "spanblame/tagging";

/// Evaluates the gate for a pull/merge request's new head and enqueues its commit status, when
/// its integration has `gate_on_reviews` and `repository` is configured there; `None`
/// otherwise (nothing to say, or nowhere to say it).
pub fn answer_review(
    jobs: &Jobs,
    integration: &str,
    repository: &str,
    review: &model::Review,
) -> Result<Option<GateAnswer>, StoreError> {
    let ctx = &jobs.ctx;
    let settings = &jobs.notifications;
    if !settings.forges.iter().any(|f| f.integration == integration && f.gate) {
        return Ok(None);
    }
    let Some(head) =
        review.head_sha.as_deref().filter(|_| review.state == model::ReviewState::Open)
    else {
        return Ok(None);
    };
    let Some(target) = settings
        .repositories
        .iter()
        .find(|r| r.integration == integration && r.repository == repository)
    else {
        return Ok(None);
    };
    let Some(kind) =
        ctx.changes.integrations.iter().find(|i| i.name == integration).map(|i| i.kind)
    else {
        return Ok(None);
    };
    let services: Vec<String> = ctx
        .changes
        .services
        .iter()
        .filter(|s| s.repository.as_deref() == Some(repository))
        .map(|s| s.service.clone())
        .collect();
    let what = if kind == model::ForgeKind::Gitlab { "merge request" } else { "pull request" };
    let mut lines = Vec::new();
    let mut passed = !services.is_empty();
    for service in &services {
        let request = GateRequest {
            service: service.clone(),
            commit: Some(head.to_owned()),
            environment: None,
            // As the forge names it (`PR #42`), as the commit page looks it up.
            review: Some((
                shapes::review_label(kind.as_str(), &review.id),
                format!("the {what} it heads"),
            )),
            expect_head: false,
        };
        let report = views::gate::evaluate(ctx, &request)?;
        let now = ctx.clock.now_unix_nanos();
        ctx.store.record_gate_result(&views::gate::result_row(&request, &report, "review", now))?;
        passed &= report.outcome != Outcome::Fail;
        lines.push(format!("{service}: {}", status_line(&report)));
    }
    if services.is_empty() {
        lines.push(format!("no [[services]] entry maps `{repository}`"));
    }
    let description = lines.join("; ");
    let state =
        if passed { forge::api::StatusState::Success } else { forge::api::StatusState::Failure };
    let url = format!("{}/commits/{head}", jobs.base_url());
    let Some(request) =
        forge::api::status(kind, &target.path, head, state, STATUS_CONTEXT, &description, &url)
    else {
        return Ok(None);
    };
    let delivery = NewDelivery {
        idempotency_key: format!("gate:{integration}:{repository}:{head}"),
        sink: format!("forge:{integration}"),
        kind: "gate".into(),
        finding_id: None,
        deploy_id: None,
        target: format!("{what} {} head {}", review.id, head.chars().take(10).collect::<String>()),
        summary: format!(
            "tagging gate {} for {what} {}: {description}",
            if passed { "passed" } else { "failed" },
            review.id
        ),
        request: serde_json::to_string(&request).unwrap_or_default(),
        supersedes: Vec::new(),
    };
    ctx.store.enqueue_deliveries(&[delivery], ctx.clock.now_unix_nanos())?;
    Ok(Some(GateAnswer { passed, services, summary: description }))
}

/// A commit status's few words: the outcome, and the first failed check's finding.
fn status_line(report: &Report) -> String {
    match report.checks.iter().find(|c| c.required && c.outcome == Outcome::Fail) {
        Some(failed) => format!("{}: {}", failed.check.name(), failed.found),
        None => views::gate::summary(report),
    }
}

/// Services whose repository is the one Harbormaster names by callsign.
fn services_of_repository(jobs: &Jobs, callsign: Option<&str>) -> Vec<String> {
    let changes = &jobs.ctx.changes;
    let Some(callsign) = callsign.filter(|c| !c.is_empty()) else { return Vec::new() };
    let monogram = format!("r{callsign}");
    let Some(repository) = changes.repository_for(&[Some(&monogram), Some(callsign)]) else {
        return Vec::new();
    };
    changes
        .services
        .iter()
        .filter(|s| s.repository.as_deref() == Some(repository.name.as_str()))
        .map(|s| s.service.clone())
        .collect()
}

/// One unit result per check: Harbormaster shows them as the build's tests.
fn unit_results(service: &str, report: &Report) -> Vec<forge::api::UnitResult> {
    report
        .checks
        .iter()
        .map(|check| {
            let result = match check.outcome {
                Outcome::Pass => "pass",
                Outcome::Fail if check.required => "fail",
                // Advice, undecided or not applicable: shown, never blocking.
                _ => "skip",
            };
            let mut details = check.found.clone();
            if check.outcome == Outcome::CannotTell {
                details = format!("Cannot tell yet: {details}");
            }
            if let Some(fix) = &check.fix {
                details.push_str(&format!("\n\nFix: {fix}"));
            }
            if !check.required {
                details.push_str("\n\n(Advice: `[gate] required` does not include this check.)");
            }
            forge::api::UnitResult {
                name: format!("{service}: {}", check.check.title()),
                result,
                details,
            }
        })
        .collect()
}
