//! Deploys with their predecessor, commit and commit range (`GET /api/v1/deploys`), and
//! where a commit shipped (`GET /api/v1/commits/{sha}/impact`).

use std::collections::HashMap;

use model::Deploy;
use store::{StoreError, StoredCommit};

use crate::changes::{commit_view, resolve_commit};
use crate::{Context, Visibility, rfc3339};
use shapes::query_escape;
use shapes::{
    CommitAboutJ, CommitImpactJ, DeployJ, FileChangeJ, ForgeEventJ, PreviousJ, RangeCommitJ, RangeJ,
};

/// Commits listed per deploy range (the rest are counted as truncated).
const MAX_RANGE_COMMITS: usize = 200;

/// Deploys newest first (of one service and environment when given) the caller may see.
pub fn deploys(
    ctx: &Context,
    visibility: &Visibility,
    service: Option<&str>,
    environment: Option<&str>,
    limit: usize,
) -> Result<Vec<DeployJ>, StoreError> {
    ctx.store
        .deploys(service, environment, limit)?
        .iter()
        .filter(|d| visibility.allows(&d.service, Some(&d.environment)))
        .map(|d| deploy_view(ctx, d))
        .collect()
}

/// A commit as `GET /api/v1/commits/{sha}` shows it: where it shipped ([`impact`]), its review,
/// and the tagging gate's last answers about it; `None` when the commit is unknown.
pub fn commit(
    ctx: &Context,
    visibility: &Visibility,
    sha: &str,
) -> Result<Option<CommitImpactJ>, StoreError> {
    let Some(mut view) = impact(ctx, visibility, sha)? else { return Ok(None) };
    let full = &view.commit.sha;
    view.about = Some(CommitAboutJ {
        review: crate::changes::review_of_commit(ctx, full)?,
        gate: crate::gate::commit_results(ctx, visibility, full)?,
    });
    Ok(Some(view))
}

/// Where a commit shipped (deploys the caller may see) and links to the traces around each;
/// `None` when the commit is unknown.
pub fn impact(
    ctx: &Context,
    visibility: &Visibility,
    sha: &str,
) -> Result<Option<CommitImpactJ>, StoreError> {
    let store = &ctx.store;
    let Some(stored) = store.find_commit(sha)? else { return Ok(None) };
    let settings = &ctx.changes;
    let target = stored.commit.sha.as_str();
    let mirror = ctx.mirrors.get(&stored.repository);
    let mut deploys = store.deploys(None, None, usize::MAX)?;
    deploys.retain(|d| visibility.allows(&d.service, Some(&d.environment)));
    let by_id: HashMap<u64, &Deploy> = deploys.iter().map(|d| (d.id, d)).collect();
    // Whether each deploy's commit is the target or has it in its history (read from the
    // commit's own mirror), worked out once per deploy.
    let mut known: HashMap<u64, Shipping> = HashMap::new();
    let mut shipping = |deploy: &Deploy| -> Result<Shipping, StoreError> {
        if let Some(&found) = known.get(&deploy.id) {
            return Ok(found);
        }
        let shipped = deploy_commit(ctx, deploy)?;
        let found = match (&shipped.sha, &shipped.stored, &mirror) {
            (Some(sha), _, _) if sha == target => Shipping::AsItsCommit,
            (Some(sha), Some(found), Some(mirror))
                if found.repository == stored.repository
                    && mirror.is_ancestor(target, sha).unwrap_or(false) =>
            {
                Shipping::InItsHistory
            }
            _ => Shipping::No,
        };
        known.insert(deploy.id, found);
        Ok(found)
    };
    let mut shipped = Vec::new();
    for deploy in &deploys {
        let previous = deploy.previous_id.and_then(|id| by_id.get(&id).copied());
        // Shipped by this deploy: its commit, or in the range from its predecessor.
        let how = match shipping(deploy)? {
            Shipping::AsItsCommit => "deploy_commit",
            Shipping::No => continue,
            Shipping::InItsHistory => match previous {
                Some(previous) if shipping(previous)? != Shipping::No => continue,
                Some(_) => "in_range",
                // Nothing is known before it in that environment.
                None => "first_known_deploy",
            },
        };
        let traces = |version: &str| {
            format!(
                "/api/v1/traces?service={}&environment={}&version={}",
                query_escape(&deploy.service),
                query_escape(&deploy.environment),
                query_escape(version)
            )
        };
        shipped.push(DeployJ {
            shipped_as: Some(how.into()),
            traces_after: Some(traces(&deploy.version)),
            traces_before: previous.map(|p| traces(&p.version)),
            ..deploy_view(ctx, deploy)?
        });
    }
    // A commit is someone's code: a caller restricted to some services sees it only when one
    // of them lives in its repository or shipped it (otherwise it is not found, as for a
    // commit that does not exist).
    let owns_repository = settings.services.iter().any(|s| {
        s.repository.as_deref() == Some(stored.repository.as_str())
            && visibility.services.as_ref().is_none_or(|v| v.contains(&s.service))
    });
    if !visibility.is_everything() && !owns_repository && shipped.is_empty() {
        return Ok(None);
    }
    Ok(Some(CommitImpactJ {
        commit: commit_view(settings, &stored),
        deploys: shipped,
        about: None,
    }))
}

/// How a deploy relates to a commit whose impact is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shipping {
    AsItsCommit,
    InItsHistory,
    No,
}

/// The commit a deploy shipped: its sha, and the stored commit when the graph knows it.
pub struct DeployCommit {
    pub sha: Option<String>,
    pub stored: Option<StoredCommit>,
}

/// Reported, or what the deploy's version resolves to.
pub fn deploy_commit(ctx: &Context, deploy: &Deploy) -> Result<DeployCommit, StoreError> {
    let store = &ctx.store;
    if let Some(sha) = &deploy.commit {
        let own = ctx.changes.ownership(&deploy.service).and_then(|o| o.repository.as_deref());
        let stored = store.find_commit_in(own, sha)?;
        let sha = stored.as_ref().map_or_else(|| sha.clone(), |c| c.commit.sha.clone());
        return Ok(DeployCommit { sha: Some(sha), stored });
    }
    if let Some(found) = resolve_commit(ctx, None, &deploy.service, Some(&deploy.version))? {
        return Ok(DeployCommit { sha: Some(found.commit.sha.clone()), stored: Some(found) });
    }
    let sha = store.version_commit(&deploy.service, &deploy.version)?;
    Ok(DeployCommit { sha, stored: None })
}

/// The commits between two deploys, read from the mirror of `repository` (the newer commit's).
/// Whether more were left out.
fn range_commits(
    ctx: &Context,
    repository: &str,
    from: &str,
    to: &str,
) -> Option<(Vec<RangeCommitJ>, bool)> {
    let mirror = ctx.mirrors.get(repository)?;
    let commits = mirror.range(Some(from), to, MAX_RANGE_COMMITS + 1).ok()?;
    let truncated = commits.len() > MAX_RANGE_COMMITS;
    let listed = commits
        .iter()
        .take(MAX_RANGE_COMMITS)
        .map(|c| RangeCommitJ {
            sha: c.sha.clone(),
            subject: c.subject().into(),
            author: c.author.display().map(str::to_owned),
            parents: c.parents.clone(),
            files: c
                .files
                .iter()
                .map(|f| FileChangeJ { path: f.path.clone(), change: f.kind.as_str().into() })
                .collect(),
        })
        .collect();
    Some((listed, truncated))
}

pub fn deploy_view(ctx: &Context, deploy: &Deploy) -> Result<DeployJ, StoreError> {
    let store = &ctx.store;
    let settings = &ctx.changes;
    let DeployCommit { sha: commit_sha, stored } = deploy_commit(ctx, deploy)?;
    let commit = stored.as_ref().map(|c| commit_view(settings, c));
    let previous = match deploy.previous_id {
        Some(id) => store.deploy(id)?,
        None => None,
    };
    let previous_commit = match &previous {
        Some(previous) => deploy_commit(ctx, previous)?.sha,
        None => None,
    };
    let range = match (&previous_commit, &commit_sha) {
        (Some(from), Some(to)) => {
            let listed = stored.as_ref().and_then(|c| range_commits(ctx, &c.repository, from, to));
            let (commits, truncated) = listed.unzip();
            Some(RangeJ { from: from.clone(), to: to.clone(), commits, truncated })
        }
        _ => None,
    };
    Ok(DeployJ {
        id: deploy.id,
        service: deploy.service.clone(),
        environment: Some(deploy.environment.clone()).filter(|e| !e.is_empty()),
        version: deploy.version.clone(),
        commit_sha,
        commit,
        repository: deploy.repository.clone(),
        started_at: rfc3339(deploy.started_at_unix_nanos),
        finished_at: deploy.finished_at_unix_nanos.map(rfc3339),
        deployer: deploy.deployer.clone(),
        is_rollback: deploy.is_rollback,
        url: deploy.url.clone(),
        source: deploy.source.as_str().into(),
        forge_event: deploy.event.as_ref().map(|e| ForgeEventJ {
            integration: e.integration.clone(),
            forge: e.forge.as_str().into(),
            kind: e.kind.clone(),
            id: e.id.clone(),
            url: e.url.clone(),
            description: e.describe(),
        }),
        previous: previous.map(|p| PreviousJ {
            id: p.id,
            version: p.version,
            commit_sha: previous_commit,
        }),
        range,
        shipped_as: None,
        traces_after: None,
        traces_before: None,
    })
}

/// One deploy the caller may see, as the API shows it.
pub fn deploy(
    ctx: &Context,
    visibility: &Visibility,
    id: u64,
) -> Result<Option<DeployJ>, StoreError> {
    match ctx.store.deploy(id)? {
        Some(d) if visibility.allows(&d.service, Some(&d.environment)) => {
            deploy_view(ctx, &d).map(Some)
        }
        _ => Ok(None),
    }
}
