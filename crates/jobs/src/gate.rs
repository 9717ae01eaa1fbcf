//! The tagging gate's answers on the forge: a Harbormaster build step's result, sent through
//! Conduit's `harbormaster.sendmessage` from the outbox (so a Phorge that is down gets it
//! later), with one unit result per service and check that names what was found and the fix.

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
