//! Reading verified webhook JSON into spanblame's change vocabulary, one function per forge
//! family. Payload structs list only the fields spanblame uses; every field a forge may omit
//! is optional, and a missing required one is named in the error.

use model::{Commit, FileChange, FileChangeKind, ForgeKind, Person, Review, ReviewState};
use serde::Deserialize;

use crate::WebhookError;

/// What a webhook delivery means to spanblame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// A forge checking the hook works (GitHub `ping`, Gogs/Gitea test pushes).
    Ping {
        reason: String,
    },
    Push(Push),
    Review(ReviewEvent),
    /// Herald names an object by PHID; its content must be fetched through Conduit.
    Herald(HeraldPointer),
    /// A deployment that succeeded or a release that was published.
    Deploy(DeployEvent),
    /// An event spanblame does not use (or a deployment that did not succeed); answered 202
    /// and logged.
    Ignored {
        event: String,
        /// Why, in a sentence for the forge's delivery log.
        reason: String,
    },
}

/// The repository an event happened in, as the forge names it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Repository {
    /// `owner/name` (GitLab: `group/subgroup/project`).
    pub full_name: String,
    pub web_url: Option<String>,
    pub clone_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub repository: Repository,
    /// `refs/heads/main`, `refs/tags/v1`.
    pub ref_name: String,
    /// 40 zeros when the ref was created.
    pub before: String,
    /// 40 zeros when the ref was deleted.
    pub after: String,
    /// The commits the forge listed: truncated by most forges (Gogs/Gitea 5, GitLab 20), so
    /// the git mirror resolves `before..after` for the full range.
    pub commits: Vec<Commit>,
    /// The real number of commits when the forge says it.
    pub total_commits: Option<u64>,
    pub forced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewEvent {
    pub repository: Repository,
    /// The forge's action name (`opened`, `synchronize`, `merge`, ...).
    pub action: String,
    pub review: Review,
}

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

/// A Herald webhook: pointers only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeraldPointer {
    /// The PHID type: `DREV` (revision), `CMIT` (commit), `TASK`, ...
    pub object_type: String,
    pub object_phid: String,
    pub transaction_phids: Vec<String>,
    /// Sent from "New Test Request" or `bin/webhook call`.
    pub is_test: bool,
    pub epoch_secs: Option<i64>,
}

/// Reads a verified delivery's JSON. `event` is [`crate::Verified::event`].
pub fn parse(kind: ForgeKind, event: &str, json: &[u8]) -> Result<WebhookEvent, WebhookError> {
    match kind {
        ForgeKind::Gogs | ForgeKind::Gitea => gogs_family(kind, event, json),
        ForgeKind::Github => github(event, json),
        ForgeKind::Gitlab => gitlab(event, json),
        ForgeKind::Phabricator => herald(json),
    }
}

fn read<'de, T: Deserialize<'de>>(json: &'de [u8]) -> Result<T, WebhookError> {
    serde_json::from_slice(json).map_err(|e| WebhookError::Malformed { reason: e.to_string() })
}

fn required(value: Option<String>, field: &'static str) -> Result<String, WebhookError> {
    value.filter(|v| !v.is_empty()).ok_or(WebhookError::MissingField { field })
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

fn timestamp_secs(text: Option<&str>) -> Option<i64> {
    text?.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

/// GitLab's event times: `2021-04-28 21:50:00 +0200` or `2020-11-02 12:55:12 UTC`, and RFC
/// 3339 elsewhere.
fn gitlab_timestamp_secs(text: Option<&str>) -> Option<i64> {
    let text = text?.trim();
    let zoned = |text: &str| {
        jiff::fmt::strtime::parse("%Y-%m-%d %H:%M:%S %z", text).ok()?.to_timestamp().ok()
    };
    let utc = text.strip_suffix(" UTC").map(|t| format!("{t} +0000"));
    zoned(text)
        .or_else(|| zoned(utc.as_deref()?))
        .map(|t| t.as_second())
        .or_else(|| timestamp_secs(Some(text)))
}

// ---------------------------------------------------------------------------------------------
// Shared shapes: Gogs, Gitea/Forgejo and GitHub use one vocabulary for users, repositories
// and pushed commits.

#[derive(Deserialize, Default)]
#[serde(default)]
struct User {
    login: Option<String>,
    username: Option<String>,
    full_name: Option<String>,
    name: Option<String>,
    email: Option<String>,
}

impl User {
    fn person(self) -> Person {
        Person {
            name: non_empty(self.full_name).or(non_empty(self.name)),
            email: non_empty(self.email),
            username: non_empty(self.username).or(non_empty(self.login)),
        }
    }

    fn handle(&self) -> Option<String> {
        non_empty(self.login.clone()).or(non_empty(self.username.clone()))
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Repo {
    full_name: Option<String>,
    html_url: Option<String>,
    clone_url: Option<String>,
}

impl Repo {
    fn repository(self) -> Result<Repository, WebhookError> {
        Ok(Repository {
            full_name: required(self.full_name, "repository.full_name")?,
            web_url: non_empty(self.html_url),
            clone_url: non_empty(self.clone_url),
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PushedCommit {
    id: Option<String>,
    message: String,
    url: Option<String>,
    timestamp: Option<String>,
    author: User,
    committer: Option<User>,
    added: Vec<String>,
    removed: Vec<String>,
    modified: Vec<String>,
}

impl PushedCommit {
    fn commit(self) -> Result<Commit, WebhookError> {
        let mut files = Vec::new();
        for (paths, kind) in [
            (self.added, FileChangeKind::Added),
            (self.removed, FileChangeKind::Removed),
            (self.modified, FileChangeKind::Modified),
        ] {
            files.extend(paths.into_iter().map(|path| FileChange { path, kind }));
        }
        files.sort();
        Ok(Commit {
            sha: required(self.id, "commits[].id")?.to_ascii_lowercase(),
            parents: Vec::new(),
            author: self.author.person(),
            committer: self.committer.map(User::person).unwrap_or_default(),
            message: self.message,
            time_unix_secs: timestamp_secs(self.timestamp.as_deref()),
            url: non_empty(self.url),
            files,
        })
    }
}

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    ref_name: Option<String>,
    before: Option<String>,
    after: Option<String>,
    #[serde(default)]
    commits: Vec<PushedCommit>,
    total_commits: Option<u64>,
    #[serde(default)]
    forced: bool,
    repository: Option<Repo>,
}

impl PushPayload {
    fn push(self) -> Result<Push, WebhookError> {
        Ok(Push {
            repository: self
                .repository
                .ok_or(WebhookError::MissingField { field: "repository" })?
                .repository()?,
            ref_name: required(self.ref_name, "ref")?,
            before: required(self.before, "before")?.to_ascii_lowercase(),
            after: required(self.after, "after")?.to_ascii_lowercase(),
            commits: self
                .commits
                .into_iter()
                .map(PushedCommit::commit)
                .collect::<Result<_, _>>()?,
            total_commits: self.total_commits,
            forced: self.forced,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Branch {
    #[serde(rename = "ref")]
    ref_name: Option<String>,
    sha: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PullRequest {
    number: Option<u64>,
    title: String,
    html_url: Option<String>,
    user: User,
    state: Option<String>,
    merged: bool,
    merge_commit_sha: Option<String>,
    head: Option<Branch>,
    /// Gogs: the head is named only by its branch.
    head_branch: Option<String>,
    requested_reviewers: Option<Vec<User>>,
}

#[derive(Deserialize)]
struct PullRequestPayload {
    action: Option<String>,
    number: Option<u64>,
    pull_request: Option<PullRequest>,
    repository: Option<Repo>,
    /// GitHub `synchronize`: the new head.
    after: Option<String>,
}

impl PullRequestPayload {
    fn review_event(self, kind: ForgeKind) -> Result<ReviewEvent, WebhookError> {
        let pr = self.pull_request.ok_or(WebhookError::MissingField { field: "pull_request" })?;
        let number = pr
            .number
            .or(self.number)
            .ok_or(WebhookError::MissingField { field: "pull_request.number" })?;
        let state = match (pr.merged, pr.state.as_deref()) {
            (true, _) => ReviewState::Merged,
            (false, Some("open")) => ReviewState::Open,
            (false, Some("closed")) => ReviewState::Closed,
            _ => return Err(WebhookError::MissingField { field: "pull_request.state" }),
        };
        let head = pr.head.unwrap_or_default();
        let head_branch = non_empty(head.ref_name).or(non_empty(pr.head_branch));
        let head_sha =
            non_empty(head.sha).or(non_empty(self.after)).map(|sha| sha.to_ascii_lowercase());
        let reviewers =
            pr.requested_reviewers.unwrap_or_default().iter().filter_map(User::handle).collect();
        Ok(ReviewEvent {
            repository: self
                .repository
                .ok_or(WebhookError::MissingField { field: "repository" })?
                .repository()?,
            action: required(self.action, "action")?,
            review: Review {
                kind,
                id: number.to_string(),
                title: pr.title,
                url: non_empty(pr.html_url),
                author: pr.user.person(),
                reviewers,
                state,
                // A Gogs pull request carries no shas at all; the store takes the head from
                // the pushes to its branch.
                head_branch,
                head_sha: head_sha.clone(),
                merge_commit_sha: non_empty(pr.merge_commit_sha).map(|s| s.to_ascii_lowercase()),
                commits: head_sha.into_iter().collect(),
            },
        })
    }
}

/// A Gogs or Gitea "test delivery" is a push with `before == after`; Gitea's carries an
/// all-zero fake commit. Neither is a real change.
fn is_test_push(push: &Push) -> bool {
    push.before == push.after
}

fn gogs_family(kind: ForgeKind, event: &str, json: &[u8]) -> Result<WebhookEvent, WebhookError> {
    match event {
        "push" => {
            let push = read::<PushPayload>(json)?.push()?;
            if is_test_push(&push) {
                return Ok(WebhookEvent::Ping { reason: "test delivery (before == after)".into() });
            }
            Ok(WebhookEvent::Push(push))
        }
        "pull_request" => {
            Ok(WebhookEvent::Review(read::<PullRequestPayload>(json)?.review_event(kind)?))
        }
        "release" => read::<ReleasePayload>(json)?.event(),
        other => ignored(other, json),
    }
}

fn github(event: &str, json: &[u8]) -> Result<WebhookEvent, WebhookError> {
    match event {
        "ping" => {
            #[derive(Deserialize)]
            struct Ping {
                zen: Option<String>,
            }
            let ping: Ping = read(json)?;
            Ok(WebhookEvent::Ping { reason: ping.zen.unwrap_or_else(|| "ping".into()) })
        }
        "push" => Ok(WebhookEvent::Push(read::<PushPayload>(json)?.push()?)),
        "pull_request" => Ok(WebhookEvent::Review(
            read::<PullRequestPayload>(json)?.review_event(ForgeKind::Github)?,
        )),
        "deployment_status" => read::<DeploymentStatusPayload>(json)?.event(),
        "release" => read::<ReleasePayload>(json)?.event(),
        other => ignored(other, json),
    }
}

/// An ignored event must still be JSON: a malformed body is a 400 whatever its event.
fn ignored(event: &str, json: &[u8]) -> Result<WebhookEvent, WebhookError> {
    read::<serde::de::IgnoredAny>(json)?;
    Ok(WebhookEvent::Ignored {
        event: event.to_owned(),
        reason: format!("spanblame does not use `{event}` events"),
    })
}

// ---------------------------------------------------------------------------------------------
// Deploys: GitHub deployment statuses, and releases from GitHub, Gitea/Forgejo and Gogs.

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
struct DeploymentStatusPayload {
    deployment_status: Option<DeploymentStatus>,
    deployment: Option<Deployment>,
    repository: Option<Repo>,
    #[serde(default)]
    sender: User,
}

impl DeploymentStatusPayload {
    fn event(self) -> Result<WebhookEvent, WebhookError> {
        let status = self
            .deployment_status
            .ok_or(WebhookError::MissingField { field: "deployment_status" })?;
        let deployment =
            self.deployment.ok_or(WebhookError::MissingField { field: "deployment" })?;
        let id = deployment.id.ok_or(WebhookError::MissingField { field: "deployment.id" })?;
        let state = required(status.state, "deployment_status.state")?;
        if state != "success" {
            return Ok(WebhookEvent::Ignored {
                event: "deployment_status".into(),
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
        Ok(WebhookEvent::Deploy(DeployEvent {
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
struct ReleasePayload {
    /// Gogs before 0.12 sends no action: its only release event is a publication.
    action: Option<String>,
    release: Option<Release>,
    repository: Option<Repo>,
    #[serde(default)]
    sender: User,
}

impl ReleasePayload {
    fn event(self) -> Result<WebhookEvent, WebhookError> {
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
            return Ok(WebhookEvent::Ignored {
                event: "release".into(),
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
        Ok(WebhookEvent::Deploy(DeployEvent {
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

// ---------------------------------------------------------------------------------------------
// GitLab

#[derive(Deserialize, Default)]
#[serde(default)]
struct GitlabProject {
    path_with_namespace: Option<String>,
    web_url: Option<String>,
    git_http_url: Option<String>,
}

impl GitlabProject {
    fn repository(self) -> Result<Repository, WebhookError> {
        Ok(Repository {
            full_name: required(self.path_with_namespace, "project.path_with_namespace")?,
            web_url: non_empty(self.web_url),
            clone_url: non_empty(self.git_http_url),
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GitlabUser {
    name: Option<String>,
    username: Option<String>,
    email: Option<String>,
}

impl GitlabUser {
    fn person(self) -> Person {
        Person {
            name: non_empty(self.name),
            // GitLab writes `[REDACTED]` for e-mails that are not public.
            email: non_empty(self.email).filter(|e| e != "[REDACTED]"),
            username: non_empty(self.username),
        }
    }
}

#[derive(Deserialize)]
struct GitlabPush {
    #[serde(rename = "ref")]
    ref_name: Option<String>,
    before: Option<String>,
    after: Option<String>,
    #[serde(default)]
    commits: Vec<GitlabCommit>,
    total_commits_count: Option<u64>,
    project: Option<GitlabProject>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GitlabCommit {
    id: Option<String>,
    message: String,
    timestamp: Option<String>,
    url: Option<String>,
    author: GitlabUser,
    added: Vec<String>,
    removed: Vec<String>,
    modified: Vec<String>,
}

#[derive(Deserialize)]
struct GitlabMergeRequest {
    user: Option<GitlabUser>,
    project: Option<GitlabProject>,
    object_attributes: Option<MergeRequestAttributes>,
    #[serde(default)]
    reviewers: Vec<GitlabUser>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MergeRequestAttributes {
    iid: Option<u64>,
    title: String,
    url: Option<String>,
    state: Option<String>,
    action: Option<String>,
    merge_commit_sha: Option<String>,
    source_branch: Option<String>,
    last_commit: Option<GitlabCommit>,
}

fn gitlab(event: &str, json: &[u8]) -> Result<WebhookEvent, WebhookError> {
    match event {
        "Push Hook" => {
            let payload: GitlabPush = read(json)?;
            let commits = payload
                .commits
                .into_iter()
                .map(|c| {
                    PushedCommit {
                        id: c.id,
                        message: c.message,
                        url: c.url,
                        timestamp: c.timestamp,
                        author: User {
                            name: c.author.name,
                            email: c.author.email.filter(|e| e != "[REDACTED]"),
                            ..User::default()
                        },
                        committer: None,
                        added: c.added,
                        removed: c.removed,
                        modified: c.modified,
                    }
                    .commit()
                })
                .collect::<Result<_, _>>()?;
            Ok(WebhookEvent::Push(Push {
                repository: payload
                    .project
                    .ok_or(WebhookError::MissingField { field: "project" })?
                    .repository()?,
                ref_name: required(payload.ref_name, "ref")?,
                before: required(payload.before, "before")?.to_ascii_lowercase(),
                after: required(payload.after, "after")?.to_ascii_lowercase(),
                commits,
                total_commits: payload.total_commits_count,
                forced: false,
            }))
        }
        "Deployment Hook" => read::<GitlabDeployment>(json)?.event(),
        "Merge Request Hook" => {
            let payload: GitlabMergeRequest = read(json)?;
            let attributes = payload
                .object_attributes
                .ok_or(WebhookError::MissingField { field: "object_attributes" })?;
            let iid = attributes
                .iid
                .ok_or(WebhookError::MissingField { field: "object_attributes.iid" })?;
            let state = match attributes.state.as_deref() {
                Some("opened" | "locked") => ReviewState::Open,
                Some("closed") => ReviewState::Closed,
                Some("merged") => ReviewState::Merged,
                _ => return Err(WebhookError::MissingField { field: "object_attributes.state" }),
            };
            let action = required(attributes.action, "object_attributes.action")?;
            // `user` is whoever acted; only on `open` is that the author.
            let author = match (action.as_str(), payload.user) {
                ("open", Some(user)) => user.person(),
                _ => Person::default(),
            };
            let head_sha = attributes
                .last_commit
                .and_then(|c| non_empty(c.id))
                .map(|sha| sha.to_ascii_lowercase());
            Ok(WebhookEvent::Review(ReviewEvent {
                repository: payload
                    .project
                    .ok_or(WebhookError::MissingField { field: "project" })?
                    .repository()?,
                action,
                review: Review {
                    kind: ForgeKind::Gitlab,
                    id: iid.to_string(),
                    title: attributes.title,
                    url: non_empty(attributes.url),
                    author,
                    reviewers: payload
                        .reviewers
                        .into_iter()
                        .filter_map(|r| non_empty(r.username))
                        .collect(),
                    state,
                    head_branch: non_empty(attributes.source_branch),
                    head_sha: head_sha.clone(),
                    merge_commit_sha: non_empty(attributes.merge_commit_sha)
                        .map(|s| s.to_ascii_lowercase()),
                    commits: head_sha.into_iter().collect(),
                },
            }))
        }
        other => ignored(other, json),
    }
}

#[derive(Deserialize)]
struct GitlabDeployment {
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
    fn event(self) -> Result<WebhookEvent, WebhookError> {
        let id = self.deployment_id.ok_or(WebhookError::MissingField { field: "deployment_id" })?;
        let status = required(self.status, "status")?;
        if status != "success" {
            return Ok(WebhookEvent::Ignored {
                event: "Deployment Hook".into(),
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
        Ok(WebhookEvent::Deploy(DeployEvent {
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

// ---------------------------------------------------------------------------------------------
// Phabricator / Phorge Herald

#[derive(Deserialize)]
struct HeraldBody {
    object: Option<HeraldObject>,
    #[serde(default)]
    action: HeraldAction,
    #[serde(default)]
    transactions: Vec<HeraldPhid>,
}

#[derive(Deserialize)]
struct HeraldObject {
    #[serde(rename = "type")]
    object_type: Option<String>,
    phid: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct HeraldAction {
    test: bool,
    epoch: Option<i64>,
}

#[derive(Deserialize)]
struct HeraldPhid {
    phid: Option<String>,
}

fn herald(json: &[u8]) -> Result<WebhookEvent, WebhookError> {
    let body: HeraldBody = read(json)?;
    let object = body.object.ok_or(WebhookError::MissingField { field: "object" })?;
    Ok(WebhookEvent::Herald(HeraldPointer {
        object_type: required(object.object_type, "object.type")?,
        object_phid: required(object.phid, "object.phid")?,
        transaction_phids: body
            .transactions
            .into_iter()
            .filter_map(|t| non_empty(t.phid))
            .collect(),
        is_test: body.action.test,
        epoch_secs: body.action.epoch,
    }))
}
