//! Deploy events: a GitHub `deployment_status` or GitLab `Deployment Hook` that succeeded, and
//! a published release (Gitea/Forgejo, Gogs, GitHub), read into a [`DeployEvent`], or into the
//! reason the event deploys nothing (a failed deployment, a draft, a deleted release).

use serde::Deserialize;

use crate::WebhookError;
use crate::payload::{
    GitlabProject, GitlabUser, Repo, Repository, User, gitlab_timestamp_secs, non_empty, required,
    timestamp_secs,
};

/// A forge saying a change went live: a deployment that succeeded (GitHub
/// `deployment_status`, GitLab `Deployment Hook`, a Harbormaster deploy plan's step), or a
/// published release (Gitea/Forgejo, Gogs, GitHub `release`). Which services it deploys, and to which environment, is the config's
/// `deploy_from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployEvent {
    pub repository: Repository,
    pub kind: DeployEventKind,
    /// The forge's id for the deployment or release: a redelivery, or a second success of the
    /// same deployment, names the same one.
    pub id: String,
    /// The commit deployed (full, or abbreviated where the forge gives no more), when the
    /// event names one; a release names a tag, which the mirror resolves.
    pub commit: Option<String>,
    /// Who deployed or published it.
    pub deployer: Option<String>,
    /// The forge's page for it (the job that deployed, the release, the status's link).
    pub url: Option<String>,
    pub started_at_unix_secs: Option<i64>,
    pub finished_at_unix_secs: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployEventKind {
    /// A deployment to the forge's named environment.
    Deployment { environment: String },
    /// A published release of a tag.
    Release { tag: String },
    /// A Phabricator Harbormaster build of a deploy plan whose steps before spanblame's
    /// passed; the plan's step names the environment.
    Build { environment: String },
}

impl DeployEventKind {
    /// `deployment`, `release` or `build`, as pages name them.
    pub fn name(&self) -> &'static str {
        match self {
            DeployEventKind::Deployment { .. } => "deployment",
            DeployEventKind::Release { .. } => "release",
            DeployEventKind::Build { .. } => "build",
        }
    }
}

/// What a deploy event's payload says: a deploy, or why it is none.
pub(crate) enum Read {
    Deploy(DeployEvent),
    NotADeploy { event: &'static str, reason: String },
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DeploymentStatus {
    state: Option<String>,
    environment: Option<String>,
    target_url: Option<String>,
    environment_url: Option<String>,
    log_url: Option<String>,
    created_at: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Deployment {
    id: Option<u64>,
    sha: Option<String>,
    environment: Option<String>,
    creator: User,
    created_at: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct DeploymentStatusPayload {
    deployment_status: Option<DeploymentStatus>,
    deployment: Option<Deployment>,
    repository: Option<Repo>,
    #[serde(default)]
    sender: User,
}

impl DeploymentStatusPayload {
    pub(crate) fn event(self) -> Result<Read, WebhookError> {
        let status = self
            .deployment_status
            .ok_or(WebhookError::MissingField { field: "deployment_status" })?;
        let deployment =
            self.deployment.ok_or(WebhookError::MissingField { field: "deployment" })?;
        let id = deployment.id.ok_or(WebhookError::MissingField { field: "deployment.id" })?;
        let state = required(status.state, "deployment_status.state")?;
        if state != "success" {
            return Ok(Read::NotADeploy {
                event: "deployment_status",
                reason: format!(
                    "deployment {id} is `{state}`: only a deployment whose status is `success` is recorded"
                ),
            });
        }
        let repository =
            self.repository.ok_or(WebhookError::MissingField { field: "repository" })?;
        let repository = repository.repository()?;
        let environment = non_empty(status.environment).or(non_empty(deployment.environment));
        let url = [status.target_url, status.environment_url, status.log_url]
            .into_iter()
            .find_map(non_empty)
            .or_else(|| repository.web_url.as_ref().map(|web| format!("{web}/deployments")));
        Ok(Read::Deploy(DeployEvent {
            kind: DeployEventKind::Deployment {
                environment: required(environment, "deployment_status.environment")?,
            },
            id: id.to_string(),
            commit: Some(required(deployment.sha, "deployment.sha")?.to_ascii_lowercase()),
            deployer: deployment.creator.handle().or(self.sender.handle()),
            url,
            started_at_unix_secs: timestamp_secs(deployment.created_at.as_deref()),
            finished_at_unix_secs: timestamp_secs(status.created_at.as_deref()),
            repository,
        }))
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Release {
    id: Option<u64>,
    tag_name: Option<String>,
    html_url: Option<String>,
    draft: bool,
    prerelease: bool,
    author: Option<User>,
    created_at: Option<String>,
    published_at: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ReleasePayload {
    /// Gogs before 0.12 sends no action: its only release event is a publication.
    action: Option<String>,
    release: Option<Release>,
    repository: Option<Repo>,
    #[serde(default)]
    sender: User,
}

impl ReleasePayload {
    pub(crate) fn event(self) -> Result<Read, WebhookError> {
        let release = self.release.ok_or(WebhookError::MissingField { field: "release" })?;
        let tag = required(release.tag_name, "release.tag_name")?;
        let action = non_empty(self.action).unwrap_or_else(|| "published".into());
        let skipped = if action != "published" {
            Some(format!("release `{tag}` was `{action}`"))
        } else if release.draft {
            Some(format!("release `{tag}` is a draft"))
        } else if release.prerelease {
            Some(format!("release `{tag}` is a pre-release"))
        } else {
            None
        };
        if let Some(skipped) = skipped {
            return Ok(Read::NotADeploy {
                event: "release",
                reason: format!("{skipped}: only a published release is recorded as a deploy"),
            });
        }
        let repository = self
            .repository
            .ok_or(WebhookError::MissingField { field: "repository" })?
            .repository()?;
        // Gitea and Gogs number releases per install, GitHub globally; the tag names it for
        // people either way.
        let id = release.id.map_or_else(|| format!("tag {tag}"), |id| id.to_string());
        let deployer = release.author.and_then(|a| a.handle()).or(self.sender.handle());
        let published = release.published_at.or(release.created_at);
        Ok(Read::Deploy(DeployEvent {
            id,
            commit: None,
            deployer,
            url: non_empty(release.html_url)
                .or_else(|| repository.web_url.as_ref().map(|web| format!("{web}/releases"))),
            started_at_unix_secs: timestamp_secs(published.as_deref()),
            finished_at_unix_secs: None,
            kind: DeployEventKind::Release { tag },
            repository,
        }))
    }
}

#[derive(Deserialize)]
pub(crate) struct GitlabDeployment {
    status: Option<String>,
    status_changed_at: Option<String>,
    deployment_id: Option<u64>,
    deployable_url: Option<String>,
    environment: Option<String>,
    project: Option<GitlabProject>,
    short_sha: Option<String>,
    commit_url: Option<String>,
    user: Option<GitlabUser>,
}

impl GitlabDeployment {
    pub(crate) fn event(self) -> Result<Read, WebhookError> {
        let id = self.deployment_id.ok_or(WebhookError::MissingField { field: "deployment_id" })?;
        let status = required(self.status, "status")?;
        if status != "success" {
            return Ok(Read::NotADeploy {
                event: "Deployment Hook",
                reason: format!(
                    "deployment {id} is `{status}`: only a deployment whose status is `success` is recorded"
                ),
            });
        }
        let repository =
            self.project.ok_or(WebhookError::MissingField { field: "project" })?.repository()?;
        // The payload names the full sha only at the end of `commit_url`.
        let full_sha = self
            .commit_url
            .as_deref()
            .and_then(|url| url.rsplit('/').next())
            .filter(|tail| tail.len() == 40 && model::looks_like_sha(tail))
            .map(str::to_owned);
        let commit = full_sha
            .or(non_empty(self.short_sha).filter(|s| model::looks_like_sha(s)))
            .ok_or(WebhookError::MissingField { field: "commit_url" })?;
        let url = non_empty(self.deployable_url)
            .or_else(|| repository.web_url.as_ref().map(|web| format!("{web}/-/environments")));
        Ok(Read::Deploy(DeployEvent {
            kind: DeployEventKind::Deployment {
                environment: required(self.environment, "environment")?,
            },
            id: id.to_string(),
            commit: Some(commit.to_ascii_lowercase()),
            deployer: self.user.and_then(|u| u.person().username),
            url,
            started_at_unix_secs: None,
            finished_at_unix_secs: gitlab_timestamp_secs(self.status_changed_at.as_deref()),
            repository,
        }))
    }
}
