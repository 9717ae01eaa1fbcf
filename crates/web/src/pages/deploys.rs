//! Deploys (list and one), and a commit's page: where it shipped and what it moved.

use askama::Template;
use shapes::{CommitJ, DeployJ, FindingJ, GateCheckJ, GateJ, ReviewJ};
use views::{Context, FindingFilter};

use super::findings::code_spans;
use crate::{Layout, Page, PageError, Viewer, render};

#[derive(Template)]
#[template(path = "deploys.html")]
struct DeploysPage {
    layout: Layout,
    service: String,
    environment: String,
    deploys: Vec<DeployJ>,
}

pub fn deploys_page(
    ctx: &Context,
    viewer: &Viewer,
    params: Vec<(String, String)>,
) -> Result<Page, PageError> {
    let (mut service, mut environment) = (None, None);
    for (key, value) in params.into_iter().filter(|(_, v)| !v.is_empty()) {
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
    let page = {
        let deploys = views::deploys::deploys(
            ctx,
            &viewer.visibility,
            service.as_deref(),
            environment.as_deref(),
            200,
        )?;
        DeploysPage {
            layout: Layout::new(viewer, "deploys", "Deploys"),
            service: service.unwrap_or_default(),
            environment: environment.unwrap_or_default(),
            deploys,
        }
    };
    render(&page)
}

#[derive(Template)]
#[template(path = "deploy.html")]
struct DeployPage {
    layout: Layout,
    d: DeployJ,
    findings: Vec<FindingJ>,
    /// Comparisons that could not tell, each with its reason (too few spans, ...).
    inconclusive: Vec<FindingJ>,
    /// Comparisons that showed no change.
    unchanged: usize,
    /// Whether the deploy's regressions form an incident (its id is the deploy's).
    incident: bool,
}

pub fn deploy_page(ctx: &Context, viewer: &Viewer, id: String) -> Result<Page, PageError> {
    let id: u64 = id.parse().map_err(|_| {
        PageError::not_found(format!("`{}` is not a deploy id; ids are numbers", id))
    })?;
    let page = {
        let Some(d) = views::deploys::deploy(ctx, &viewer.visibility, id)? else {
            return Err(PageError::not_found(format!(
                "there is no deploy {id} (or you may not see it)"
            )));
        };
        let (findings, rest): (Vec<FindingJ>, Vec<FindingJ>) =
            findings_of(ctx, viewer, &d)?.into_iter().partition(FindingJ::moved);
        let (inconclusive, unchanged): (Vec<FindingJ>, Vec<FindingJ>) =
            rest.into_iter().partition(|f| f.verdict == "inconclusive");
        DeployPage {
            layout: Layout::new(
                viewer,
                "deploys",
                format!("Deploy of {} {} to {}", d.service, d.version, d.environment()),
            ),
            incident: findings.iter().any(|f| f.verdict == "regressed"),
            d,
            findings,
            inconclusive,
            unchanged: unchanged.len(),
        }
    };
    render(&page)
}

/// A deploy's findings the caller may see.
fn findings_of(
    ctx: &Context,
    viewer: &Viewer,
    deploy: &DeployJ,
) -> Result<Vec<FindingJ>, PageError> {
    let filter = FindingFilter {
        deploy_id: Some(deploy.id),
        service: Some(deploy.service.clone()),
        environment: deploy.environment.clone(),
        limit: 1_000,
        ..FindingFilter::default()
    };
    Ok(views::findings::list(ctx, &viewer.visibility, filter)?)
}

#[derive(Template)]
#[template(path = "commit.html")]
struct CommitPage {
    layout: Layout,
    commit: CommitJ,
    review: Option<ReviewJ>,
    deploys: Vec<DeployJ>,
    findings: Vec<FindingJ>,
    gate: Vec<GateView>,
}

/// One answer of the tagging gate as the commit page shows it: its texts with their
/// `backquoted` names as code.
struct GateView {
    answer: GateJ,
    checks: Vec<(GateCheckJ, String, Option<String>)>,
}

pub fn commit_page(ctx: &Context, viewer: &Viewer, sha: String) -> Result<Page, PageError> {
    if !model::looks_like_sha(&sha) {
        return Err(PageError::not_found(format!(
            "`{sha}` is not a commit id; use at least 7 hex digits"
        )));
    }
    let page = {
        let Some(impact) = views::deploys::impact(ctx, &viewer.visibility, &sha)? else {
            return Err(PageError::not_found(format!(
                "commit `{sha}` is not known (from webhooks or mirrors)"
            )));
        };
        let commit = impact.commit;
        let review = views::changes::review_of_commit(ctx, &commit.sha)?;
        let gate = views::gate::commit_results(ctx, &viewer.visibility, &commit.sha)?;
        let gate = gate
            .into_iter()
            .map(|answer| {
                let checks = answer
                    .checks
                    .iter()
                    .map(|c| (c.clone(), code_spans(&c.found), c.fix.as_deref().map(code_spans)))
                    .collect();
                GateView { answer, checks }
            })
            .collect();
        let deploys = impact.deploys;
        let mut moved = Vec::new();
        for deploy in &deploys {
            moved.extend(findings_of(ctx, viewer, deploy)?.into_iter().filter(FindingJ::moved));
        }
        CommitPage {
            layout: Layout::new(
                viewer,
                "deploys",
                format!("Commit {}: {}", commit.short(), commit.subject),
            ),
            commit,
            review,
            deploys,
            findings: moved,
            gate,
        }
    };
    render(&page)
}
