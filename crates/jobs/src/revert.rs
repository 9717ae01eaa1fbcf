//! Proposing a regression's revert where the change was reviewed: the suspects' revert is made
//! on the repository's head in its mirror (or refused, naming the conflicting files), and a
//! delivery is queued in the outbox under one key per finding and suspects, so asking twice
//! proposes it once. The delivery then opens the revert for review: on Phabricator/Phorge, a
//! new Differential revision through Conduit, reviewed by the original author and reviewers;
//! on Gitea/Forgejo, GitHub and GitLab, the revert committed on a `spanblame/revert-…` branch
//! pushed with the repository's credentials and a pull (merge) request of it, reviewers
//! requested where the forge takes names; on Gogs, which has no pull request API, the branch
//! and the link that opens one. Each names who asked.

use model::ForgeKind;
use serde::{Deserialize, Serialize};
use shapes::{RevertProposedJ, SuspectJ};
use store::{NewDelivery, StoreError};

use crate::Jobs;

/// Why a revert cannot be proposed, in words for the person asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No such finding, or no such suspect.
    NotFound(String),
    /// The revert does not apply on the branch head (the files are named).
    Conflict(String),
    /// Not a regression with suspects, or no forge or mirror to propose it with.
    Unsupported(String),
}

impl Refused {
    pub fn message(&self) -> &str {
        match self {
            Refused::NotFound(m) | Refused::Conflict(m) | Refused::Unsupported(m) => m,
        }
    }
}

/// A proposal queued (or found queued before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposed {
    pub delivery_id: u64,
    pub idempotency_key: String,
    /// `revert of D7`, `revert of commit 1a2b3c4d5e`.
    pub target: String,
    pub integration: String,
    /// The commits reverted, newest first.
    pub commits: Vec<String>,
    /// Whether this request queued it.
    pub new: bool,
}

impl Proposed {
    /// The proposal as the API and MCP answer it.
    pub fn view(&self) -> RevertProposedJ {
        RevertProposedJ {
            status: if self.new { "queued" } else { "already proposed" },
            target: self.target.clone(),
            integration: self.integration.clone(),
            commits: self.commits.clone(),
            notification: self.delivery_id,
            idempotency_key: self.idempotency_key.clone(),
            message: format!(
                "GET /api/v1/notifications?finding=... lists notification {}; its `result` names the revision once the forge made it",
                self.delivery_id
            ),
        }
    }
}

/// What the delivery sends: everything but the credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevertPlan {
    /// The repository on the forge (Phabricator: its monogram).
    pub repository: String,
    /// The configured repository (`[[repositories]] name`), whose mirror makes the commit.
    #[serde(default)]
    pub mirror: String,
    /// Pull requests: the branch the revert is pushed to, the branch it goes into, when the
    /// commit is dated (so a retry pushes the same commit), and Gogs' compare page.
    #[serde(default)]
    pub branch: String,
    #[serde(default)]
    pub base: String,
    #[serde(default)]
    pub at_unix_secs: i64,
    #[serde(default)]
    pub compare_url: Option<String>,
    /// The revert against `onto`, as `git diff` writes it.
    pub diff: String,
    pub onto: String,
    pub commits: Vec<String>,
    pub title: String,
    pub summary: String,
    pub test_plan: String,
    /// Usernames: the original author and reviewers.
    pub reviewers: Vec<String>,
}

/// Queues the revert of finding `finding_id`'s suspects (those whose shas start with one of
/// `commits`, else the top one), asked for by `requested_by`.
pub fn propose(
    jobs: &Jobs,
    finding_id: u64,
    commits: &[String],
    requested_by: &str,
) -> Result<Result<Proposed, Refused>, StoreError> {
    let ctx = &jobs.ctx;
    let Some(stored) = ctx.store.finding(finding_id)? else {
        return Ok(Err(Refused::NotFound(format!("no finding {finding_id}"))));
    };
    if stored.verdict != "regressed" || stored.explanation.is_none() {
        return Ok(Err(Refused::Unsupported(format!(
            "finding {finding_id} is not an explained regression: there are no suspects to revert"
        ))));
    }
    let view = views::findings::full_view(ctx, &stored)?;
    let chosen: Vec<&SuspectJ> = if commits.is_empty() {
        view.suspects().iter().take(1).collect()
    } else {
        let mut chosen = Vec::new();
        for wanted in commits {
            let wanted = wanted.to_ascii_lowercase();
            match view.suspects().iter().find(|s| s.commit.sha.starts_with(&wanted)) {
                Some(suspect) => chosen.push(suspect),
                None => {
                    return Ok(Err(Refused::NotFound(format!(
                        "commit {wanted} is not a suspect of finding {finding_id}"
                    ))));
                }
            }
        }
        chosen
    };
    let Some(first) = chosen.first() else {
        return Ok(Err(Refused::Unsupported(format!(
            "finding {finding_id} names no suspect commit to revert"
        ))));
    };
    let repository = first.commit.repository.clone();
    if chosen.iter().any(|s| s.commit.repository != repository) {
        return Ok(Err(Refused::Unsupported(
            "the suspects live in different repositories: propose one revert per repository".into(),
        )));
    }
    let Some(forge) = jobs.notifications.repositories.iter().find(|r| r.repository == repository)
    else {
        return Ok(Err(Refused::Unsupported(format!(
            "repository `{repository}` has no forge to propose on: set `integration` on its `[[repositories]]` entry"
        ))));
    };
    let integration = ctx.changes.integrations.iter().find(|i| i.name == forge.integration);
    let Some(integration) = integration.filter(|i| i.api_url.is_some() && i.api_token.is_some())
    else {
        return Ok(Err(Refused::Unsupported(format!(
            "integration `{}` has no API access: set `api_url` and `api_token_env`",
            forge.integration
        ))));
    };
    let shas: Vec<String> = chosen.iter().map(|s| s.commit.sha.clone()).collect();
    let mut keyed = shas.clone();
    keyed.sort();
    let key = format!("revert:{finding_id}:{}", keyed.join(","));
    // Asked before: the same proposal, whatever the head has become since.
    if let Some(queued) = ctx.store.delivery_by_key(&key)? {
        let plan: Option<RevertPlan> = serde_json::from_str(&queued.request).ok();
        return Ok(Ok(Proposed {
            delivery_id: queued.id,
            idempotency_key: key,
            target: queued.target,
            integration: integration.name.clone(),
            commits: plan.map_or(keyed, |p| p.commits),
            new: false,
        }));
    }
    let Some(mirror) = ctx.mirrors.get(&repository) else {
        return Ok(Err(Refused::Unsupported(format!(
            "repository `{repository}` has no mirror yet: give it a `url` (or `path`) so its history can be read"
        ))));
    };
    let revert = match mirror.revert("HEAD", &shas) {
        Ok(Ok(revert)) => revert,
        Ok(Err(refusal)) => {
            let message = format!("the revert does not apply: {refusal}");
            return Ok(Err(match refusal {
                mirror::RevertRefusal::Conflict { .. } => Refused::Conflict(message),
                _ => Refused::Unsupported(message),
            }));
        }
        Err(e) => return Err(StoreError::Metadata(format!("reading the mirror: {e}"))),
    };
    let mut reviewers: Vec<String> = Vec::new();
    let mut reviewed = Vec::new();
    for suspect in &chosen {
        let label = match &suspect.review {
            Some(review) => {
                if let Some(stored) = ctx.store.review(&repository, &review.id)? {
                    reviewers.extend(stored.review.author.username.clone());
                    reviewers.extend(stored.review.reviewers.iter().cloned());
                }
                review.label()
            }
            None => format!("commit {}", suspect.commit.short()),
        };
        reviewed.push((suspect, label));
    }
    reviewers.retain(|r| !r.starts_with("PHID-"));
    reviewers.sort();
    reviewers.dedup();
    let site = jobs.base_url();
    let (title, target) = match reviewed.as_slice() {
        [(suspect, label)] => {
            (format!("Revert \"{}\"", suspect.commit.subject), format!("revert of {label}"))
        }
        many => (
            format!("Revert {} commits behind {}'s regression", many.len(), stored.service),
            format!(
                "revert of {}",
                many.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join(", ")
            ),
        ),
    };
    let mut summary = String::new();
    for (suspect, label) in &reviewed {
        summary.push_str(&format!("This reverts commit {} ({label}).\n", suspect.commit.sha));
    }
    summary.push_str(&format!(
        "\nspanblame found {} of `{}` in {} regressed after deploy {} ({}): {site}/findings/{finding_id}\n\nProposed by {requested_by}.\n",
        view.metric,
        view.operation,
        stored.service,
        view.deploy.as_ref().map_or("?", |d| d.version.as_str()),
        stored.environment,
    ));
    let test_plan = format!(
        "Revert-only change, made by `git apply --reverse` of the commits on {}. After deploying it, {site}/findings/{finding_id} shows whether {} of `{}` returns to its baseline.",
        revert.onto, view.metric, view.operation
    );
    let base = match mirror.default_branch() {
        Ok(branch) => branch.unwrap_or_else(|| "main".into()),
        Err(e) => return Err(StoreError::Metadata(format!("reading the mirror: {e}"))),
    };
    let branch = format!(
        "spanblame/revert-{finding_id}-{}",
        &revert.commits[0][..10.min(revert.commits[0].len())]
    );
    let compare_url = ctx
        .changes
        .repositories
        .iter()
        .find(|r| r.name == repository)
        .and_then(|r| r.web_url())
        .map(|web| format!("{web}/compare/{base}...{branch}"));
    let plan = RevertPlan {
        repository: forge.path.clone(),
        mirror: repository.clone(),
        branch,
        base,
        at_unix_secs: (ctx.clock.now_unix_nanos() / 1_000_000_000) as i64,
        compare_url,
        diff: revert.diff,
        onto: revert.onto,
        commits: revert.commits.clone(),
        title,
        summary,
        test_plan,
        reviewers,
    };
    let row = NewDelivery {
        idempotency_key: key.clone(),
        sink: format!("forge:{}", integration.name),
        kind: "revert".into(),
        finding_id: Some(finding_id),
        deploy_id: Some(stored.deploy_id),
        target: target.clone(),
        summary: format!("{target}, proposed by {requested_by}"),
        request: serde_json::to_string(&plan).unwrap_or_default(),
        supersedes: Vec::new(),
    };
    let added =
        ctx.store.enqueue_deliveries(std::slice::from_ref(&row), ctx.clock.now_unix_nanos())?;
    let queued = ctx
        .store
        .delivery_by_key(&key)?
        .ok_or_else(|| StoreError::Metadata("a queued revert vanished".into()))?;
    Ok(Ok(Proposed {
        delivery_id: queued.id,
        idempotency_key: key,
        target: queued.target,
        integration: integration.name.clone(),
        commits: revert.commits,
        new: added > 0,
    }))
}

/// Why sending a revert failed: the forge's status and words, and whether retrying can help.
#[derive(Debug, Clone)]
pub struct SendFailure {
    pub status: Option<u16>,
    pub message: String,
    pub permanent: bool,
}

/// One forge API call with the integration's token: the status and the (capped) answer.
async fn call(
    client: &reqwest::Client,
    kind: ForgeKind,
    base: &str,
    token: &str,
    request: forge::api::ApiRequest,
) -> Result<(u16, Vec<u8>), SendFailure> {
    let prepared = forge::api::prepare(kind, &request, token);
    let mut builder = client
        .request(
            request.method.parse().unwrap_or(reqwest::Method::POST),
            format!("{base}{}", request.path),
        )
        .header("content-type", prepared.content_type)
        .body(prepared.body);
    for (header, value) in prepared.headers {
        builder = builder.header(header, value);
    }
    let response = builder.send().await.map_err(|e| SendFailure {
        status: None,
        message: crate::outbound::error_chain(&e),
        permanent: false,
    })?;
    let status = response.status().as_u16();
    let body = crate::outbound::read_capped(response, 1 << 20).await.unwrap_or_default();
    Ok((status, body))
}

/// Opens the planned revert on the integration's forge. Returns the last HTTP status and what
/// it made (`D43 <url>`, a pull request's page, or Gogs' branch and compare page).
pub async fn send(
    jobs: &Jobs,
    client: &reqwest::Client,
    integration: &views::Integration,
    plan: &str,
) -> Result<(u16, String), SendFailure> {
    let plan: RevertPlan = serde_json::from_str(plan).map_err(|e| SendFailure {
        status: None,
        message: format!("the stored revert is not readable: {e}"),
        permanent: true,
    })?;
    let (Some(api_url), Some(token)) = (&integration.api_url, &integration.api_token) else {
        return Err(SendFailure {
            status: None,
            message: format!(
                "integration `{}` has no `api_url` or API token; set `api_url` and `api_token_env`, then retry",
                integration.name
            ),
            permanent: true,
        });
    };
    let base = api_url.trim_end_matches('/');
    match integration.kind {
        ForgeKind::Phabricator => send_revision(client, base, token, &plan).await,
        kind => send_branch(jobs, client, kind, base, token, &plan).await,
    }
}

/// Gitea/Forgejo, GitHub, GitLab, Gogs: the revert committed and pushed to its branch, then
/// its pull request (and reviewers) where the forge has an API for one.
async fn send_branch(
    jobs: &Jobs,
    client: &reqwest::Client,
    kind: ForgeKind,
    base: &str,
    token: &str,
    plan: &RevertPlan,
) -> Result<(u16, String), SendFailure> {
    let failure =
        |message: String, permanent: bool| SendFailure { status: None, message, permanent };
    let Some(mirror) = jobs.ctx.mirrors.get(&plan.mirror) else {
        return Err(failure(format!("the mirror of `{}` is not ready yet", plan.mirror), false));
    };
    let (onto, commits) = (plan.onto.clone(), plan.commits.clone());
    let message = format!("{}\n\n{}", plan.title, plan.summary);
    let (branch, at) = (plan.branch.clone(), plan.at_unix_secs);
    let pushed = tokio::task::spawn_blocking(move || -> Result<(), SendFailure> {
        let revert = match mirror.revert(&onto, &commits) {
            Ok(Ok(revert)) => revert,
            Ok(Err(refusal)) => {
                return Err(failure(format!("the revert no longer applies: {refusal}"), true));
            }
            Err(e) => return Err(failure(format!("reading the mirror: {e}"), false)),
        };
        let sha = mirror
            .commit_revert(&revert, &message, at)
            .map_err(|e| failure(format!("committing the revert: {e}"), false))?;
        mirror
            .push_branch(&sha, &branch)
            .map_err(|e| failure(format!("pushing branch `{branch}`: {e}"), false))
    })
    .await
    .map_err(|e| failure(e.to_string(), false))?;
    pushed?;
    let Some(request) = forge::revert::pull_request(
        kind,
        &plan.repository,
        &plan.title,
        &plan.summary,
        &plan.branch,
        &plan.base,
    ) else {
        // Gogs: the branch, and the page that opens its pull request.
        let link = plan.compare_url.clone().unwrap_or_default();
        return Ok((200, format!("{} {link}", plan.branch).trim().to_owned()));
    };
    let (status, body) = call(client, kind, base, token, request).await?;
    let (number, url) =
        forge::revert::read_pull_request(kind, status, &body).map_err(|refusal| SendFailure {
            status: Some(status),
            message: refusal.message,
            permanent: refusal.permanent,
        })?;
    if let Some(number) = number {
        // The pull request stands without them: a refusal (a reviewer without access) is logged.
        let request = match kind {
            ForgeKind::Gitlab => gitlab_reviewers(client, base, token, plan, number).await,
            _ => forge::revert::request_reviewers(kind, &plan.repository, number, &plan.reviewers),
        };
        if let Some(request) = request {
            match call(client, kind, base, token, request).await {
                Ok((status, body)) if forge::api::http_status(status, &body).is_ok() => {}
                Ok((status, _)) => {
                    tracing::warn!(status, "requesting the revert's reviewers was refused")
                }
                Err(e) => {
                    tracing::warn!(error = %e.message, "requesting the revert's reviewers failed")
                }
            }
        }
    }
    let label = match number {
        Some(n) if kind == ForgeKind::Gitlab => format!("!{n}"),
        Some(n) => format!("#{n}"),
        None => "pull request".into(),
    };
    Ok((status, format!("{label} {}", url.unwrap_or_default()).trim().to_owned()))
}

/// GitLab's reviewers are user ids: each username looked up, then the merge request set to
/// the ones found (`None` when there are none).
async fn gitlab_reviewers(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    plan: &RevertPlan,
    iid: u64,
) -> Option<forge::api::ApiRequest> {
    let mut ids = Vec::new();
    for username in &plan.reviewers {
        let request = forge::revert::gitlab_user(username);
        if let Ok((status, body)) = call(client, ForgeKind::Gitlab, base, token, request).await
            && let Ok(Some(id)) = forge::revert::read_gitlab_user(status, &body)
        {
            ids.push(id);
        }
    }
    (!ids.is_empty()).then(|| forge::revert::gitlab_reviewers(&plan.repository, iid, &ids))
}

/// Phabricator: the reviewers' and repository's PHIDs, the raw diff, then the revision.
async fn send_revision(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    plan: &RevertPlan,
) -> Result<(u16, String), SendFailure> {
    let conduit = |request: forge::api::ApiRequest| {
        call(client, ForgeKind::Phabricator, base, token, request)
    };
    let refused = |status: u16| {
        move |refusal: forge::api::Refusal| SendFailure {
            status: Some(status),
            message: refusal.message,
            permanent: refusal.permanent,
        }
    };
    let mut reviewer_phids = Vec::new();
    if !plan.reviewers.is_empty() {
        let (status, body) = conduit(forge::revert::users(&plan.reviewers)).await?;
        reviewer_phids = forge::revert::read_users(status, &body).map_err(refused(status))?;
        // The bot cannot review its own revision.
        let (status, body) = conduit(forge::revert::whoami()).await?;
        let me = forge::revert::read_whoami(status, &body).map_err(refused(status))?;
        reviewer_phids.retain(|phid| *phid != me);
    }
    let mut repository_phid = None;
    if let Some(request) = forge::revert::repository(&plan.repository) {
        let (status, body) = conduit(request).await?;
        repository_phid = forge::revert::read_repository(status, &body).map_err(refused(status))?;
    }
    let (status, body) =
        conduit(forge::revert::create_diff(&plan.diff, repository_phid.as_deref())).await?;
    let diff_phid = forge::revert::read_diff(status, &body).map_err(refused(status))?;
    let text = forge::revert::RevisionText {
        title: &plan.title,
        summary: &plan.summary,
        test_plan: &plan.test_plan,
    };
    let request = forge::revert::create_revision(
        &diff_phid,
        &text,
        &reviewer_phids,
        repository_phid.as_deref(),
    );
    let (status, body) = conduit(request).await?;
    let revision = forge::revert::read_revision(status, &body).map_err(refused(status))?;
    Ok((status, format!("{revision} {base}/{revision}")))
}
