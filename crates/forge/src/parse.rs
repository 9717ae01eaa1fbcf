//! Reading verified webhook JSON into spanblame's change vocabulary, one function per forge
//! family. Payload structs list only the fields spanblame uses; every field a forge may omit
//! is optional, and a missing required one is named in the error.

use model::{Commit, FileChange, FileChangeKind, ForgeKind, Person, Review, ReviewState};
use serde::Deserialize;

use crate::WebhookError;
use crate::deploys::{
    DeployEvent, DeploymentStatusPayload, GitlabDeployment, Read, ReleasePayload,
};
use crate::payload::{
    GitlabProject, GitlabUser, Repo, Repository, User, non_empty, read, required, timestamp_secs,
};

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

// ---------------------------------------------------------------------------------------------
// Shared shapes: Gogs, Gitea/Forgejo and GitHub use one vocabulary for users, repositories
// and pushed commits.

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
        "release" => deploy(read::<ReleasePayload>(json)?.event()?),
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
        "deployment_status" => deploy(read::<DeploymentStatusPayload>(json)?.event()?),
        "release" => deploy(read::<ReleasePayload>(json)?.event()?),
        other => ignored(other, json),
    }
}

/// A deploy event as spanblame takes it: a deploy, or ignored with the reason.
fn deploy(read: Read) -> Result<WebhookEvent, WebhookError> {
    Ok(match read {
        Read::Deploy(deploy) => WebhookEvent::Deploy(deploy),
        Read::NotADeploy { event, reason } => WebhookEvent::Ignored { event: event.into(), reason },
    })
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
// GitLab

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
        "Deployment Hook" => deploy(read::<GitlabDeployment>(json)?.event()?),
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
