//! Deploys reported by forges: a deployment that succeeded (GitHub, GitLab, a Phabricator
//! Harbormaster deploy plan) or a published release (Gitea/Forgejo, Gogs, GitHub) becomes one
//! deploy of each service whose `deploy_from` names it, merged with reported and inferred
//! deploys by the store's rules.
//!
//! A forge names a commit (or a tag), while spans name a `service.version`: the version is
//! the one whose spans name that commit, else the release's tag as spans would write it (`v1.2`
//! or `1.2`, whichever the service has sent), else the commit itself, renamed by the store
//! when the build's spans arrive naming the commit.

use forge::{DeployEvent, DeployEventKind};
use model::{Deploy, ForgeEvent, ForgeKind};
use store::{NewDeploy, StoreError};
use views::RepositorySettings;

use crate::Jobs;

/// What one forge event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForgeDeploys {
    /// The deploys recorded now; the services whose deploy was recorded before (a redelivery,
    /// or another success of the same deployment).
    Recorded { deploys: Vec<Deploy>, already: Vec<String> },
    /// No service is deployed by it; the reason names the configuration that would.
    NoService { reason: String },
}

/// Records the deploys `event` reports, arriving on `integration` (of kind `forge`), at
/// `now_unix_nanos` when the forge gives no time.
pub fn record(
    jobs: &Jobs,
    integration: &str,
    forge: ForgeKind,
    event: &DeployEvent,
    now_unix_nanos: u64,
) -> Result<ForgeDeploys, StoreError> {
    let settings = &jobs.ctx.changes;
    let names = [
        Some(event.repository.full_name.as_str()),
        event.repository.web_url.as_deref(),
        event.repository.clone_url.as_deref(),
    ];
    let Some(repository) = settings.repository_for(&names) else {
        return Ok(ForgeDeploys::NoService {
            reason: format!(
                "repository `{}` is not configured: add it to `[[repositories]]` and name it in the `repository` of the services it deploys",
                event.repository.full_name
            ),
        });
    };
    let targets: Vec<(String, String)> = settings
        .services
        .iter()
        .filter(|s| s.repository.as_deref() == Some(repository.name.as_str()))
        .filter_map(|s| {
            let environment = s.deploy_from.iter().find_map(|t| t.environment_for(&event.kind))?;
            Some((s.service.clone(), environment))
        })
        .collect();
    if targets.is_empty() {
        let example = match &event.kind {
            DeployEventKind::Deployment { environment }
            | DeployEventKind::Build { environment } => {
                format!("deployment:{environment}")
            }
            DeployEventKind::Release { .. } => "release:production".into(),
        };
        return Ok(ForgeDeploys::NoService {
            reason: format!(
                "no `[[services]]` entry of repository `{}` has a `deploy_from` that takes this {}: add `deploy_from = [\"{example}\"]` to the services it deploys",
                repository.name,
                describe(&event.kind)
            ),
        });
    }
    let commit = match (&event.commit, &event.kind) {
        (Some(commit), _) => Some(commit.clone()),
        (None, DeployEventKind::Release { tag }) => tag_commit(jobs, repository, tag),
        (None, DeployEventKind::Deployment { .. } | DeployEventKind::Build { .. }) => None,
    };
    // A time the forge says is kept only when it is after 1970 and before 2262.
    let unix_nanos = |secs: Option<i64>| {
        secs.and_then(|s| s.checked_mul(1_000_000_000)).and_then(|n| u64::try_from(n).ok())
    };
    let finished = unix_nanos(event.finished_at_unix_secs);
    let started = unix_nanos(event.started_at_unix_secs).or(finished).unwrap_or(now_unix_nanos);
    let reported = ForgeEvent {
        integration: integration.to_owned(),
        forge,
        kind: event.kind.name().to_owned(),
        id: event.id.clone(),
        url: event.url.clone(),
    };
    let (mut deploys, mut already) = (Vec::new(), Vec::new());
    for (service, environment) in targets {
        let version = version(jobs, &service, &environment, &event.kind, commit.as_deref())?;
        let Some(version) = version else {
            tracing::warn!(%service, event = %reported.describe(), "a forge deploy names no commit or tag; not recorded");
            continue;
        };
        let deploy = NewDeploy {
            service: service.clone(),
            environment,
            version,
            commit: commit.clone(),
            repository: Some(repository.name.clone()),
            started_at_unix_nanos: started,
            finished_at_unix_nanos: finished,
            deployer: event.deployer.clone(),
            is_rollback: false,
            url: event.url.clone(),
            event: Some(reported.clone()),
        };
        match jobs.ctx.store.record_forge_deploy(&deploy)? {
            Some(recorded) => deploys.push(recorded),
            None => already.push(service),
        }
    }
    Ok(ForgeDeploys::Recorded { deploys, already })
}

fn describe(kind: &DeployEventKind) -> String {
    match kind {
        DeployEventKind::Deployment { environment } => format!("deployment to `{environment}`"),
        DeployEventKind::Release { tag } => format!("release of `{tag}`"),
        DeployEventKind::Build { environment } => format!("build deploying to `{environment}`"),
    }
}

/// The version a forge deploy ships, as the service's spans name it (see the module's
/// documentation).
fn version(
    jobs: &Jobs,
    service: &str,
    environment: &str,
    kind: &DeployEventKind,
    commit: Option<&str>,
) -> Result<Option<String>, StoreError> {
    let store = &jobs.ctx.store;
    if let Some(commit) = commit
        && let Some(version) = store.versions_of_commit(service, environment, commit)?.first()
    {
        return Ok(Some(version.clone()));
    }
    match kind {
        DeployEventKind::Release { tag } => {
            let bare =
                tag.strip_prefix('v').filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
            let Some(bare) = bare else { return Ok(Some(tag.clone())) };
            // Only a `v1.2`-style tag needs the catalog: which form the service's spans use.
            let known = store.services()?;
            let sent = |version: &str| {
                known
                    .iter()
                    .filter(|s| s.name == service)
                    .any(|s| s.versions.iter().any(|v| v.version.as_deref() == Some(version)))
            };
            Ok(Some(if !sent(tag) && sent(bare) { bare.to_owned() } else { tag.clone() }))
        }
        DeployEventKind::Deployment { .. } | DeployEventKind::Build { .. } => {
            Ok(commit.map(str::to_owned))
        }
    }
}

/// The commit a release's tag names, from the repository's mirror (fetched once when the tag
/// is newer than the mirror).
fn tag_commit(jobs: &Jobs, repository: &RepositorySettings, tag: &str) -> Option<String> {
    let refname = format!("refs/tags/{tag}");
    let resolve = || jobs.ctx.mirrors.get(&repository.name)?.resolve(&refname).ok().flatten();
    if let Some(sha) = resolve() {
        return Some(sha);
    }
    repository.mirror.as_ref()?;
    if let Err(e) = crate::mirrors::sync_once(jobs, repository) {
        tracing::warn!(repository = %repository.name, error = %e, "fetching the mirror for a release's tag failed");
    }
    resolve()
}
