//! Proposing a regression's revert where the change was reviewed: the suspects' revert is made
//! on the repository's head in its mirror (or refused, naming the conflicting files), and a
//! delivery is queued in the outbox under one key per finding and suspects, so asking twice
//! proposes it once. The delivery then opens the revert for review: on Phabricator/Phorge, a
//! new Differential revision through Conduit (`forge::revert`), reviewed by the original
//! author and reviewers, naming who asked. Gitea/Forgejo, GitHub, GitLab and Gogs are refused
//! with the rollback draft's commands until their branch-and-pull-request path is built.

use model::ForgeKind;
use serde::{Deserialize, Serialize};
use store::{NewDelivery, StoreError};
use views::shapes::{FindingJ, SuspectJ};

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

/// What the delivery sends: everything but the credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevertPlan {
    /// The repository on the forge (Phabricator: its monogram).
    pub repository: String,
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
    let view: FindingJ =
        serde_json::from_value(views::findings::full_view(ctx, &stored)?).unwrap_or_default();
    let chosen: Vec<&SuspectJ> = if commits.is_empty() {
        view.suspects.iter().take(1).collect()
    } else {
        let mut chosen = Vec::new();
        for wanted in commits {
            let wanted = wanted.to_ascii_lowercase();
            match view.suspects.iter().find(|s| s.commit.sha.starts_with(&wanted)) {
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
    if integration.kind != ForgeKind::Phabricator {
        return Ok(Err(Refused::Unsupported(format!(
            "proposing a revert on {} is not built yet (Phabricator/Phorge is): use the rollback draft's `git revert` commands",
            integration.kind.display_name()
        ))));
    }
    let Some(mirror) = ctx.mirrors.get(&repository) else {
        return Ok(Err(Refused::Unsupported(format!(
            "repository `{repository}` has no mirror yet: give it a `url` (or `path`) so its history can be read"
        ))));
    };
    let shas: Vec<String> = chosen.iter().map(|s| s.commit.sha.clone()).collect();
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
    let base = jobs.base_url();
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
        "\nspanblame found {} of `{}` in {} regressed after deploy {} ({}): {base}/findings/{finding_id}\n\nProposed by {requested_by}.\n",
        view.metric,
        view.operation,
        stored.service,
        view.deploy.as_ref().map_or("?", |d| d.version.as_str()),
        stored.environment,
    ));
    let test_plan = format!(
        "Revert-only change, made by `git apply --reverse` of the commits on {}. After deploying it, {base}/findings/{finding_id} shows whether {} of `{}` returns to its baseline.",
        revert.onto, view.metric, view.operation
    );
    let plan = RevertPlan {
        repository: forge.path.clone(),
        diff: revert.diff,
        onto: revert.onto,
        commits: revert.commits.clone(),
        title,
        summary,
        test_plan,
        reviewers,
    };
    let mut keyed = shas.clone();
    keyed.sort();
    let key = format!("revert:{finding_id}:{}", keyed.join(","));
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

/// Opens the planned revert on Phabricator: the reviewers' and repository's PHIDs, the raw
/// diff, then the revision. Returns the last HTTP status and the revision (`D43 <url>`).
pub async fn send(
    client: &reqwest::Client,
    api_url: &str,
    token: &str,
    plan: &str,
) -> Result<(u16, String), SendFailure> {
    let plan: RevertPlan = serde_json::from_str(plan).map_err(|e| SendFailure {
        status: None,
        message: format!("the stored revert is not readable: {e}"),
        permanent: true,
    })?;
    let base = api_url.trim_end_matches('/');
    let conduit = |request: forge::api::ApiRequest| async move {
        let prepared = forge::api::prepare(ForgeKind::Phabricator, &request, token);
        let mut builder = client
            .post(format!("{base}{}", request.path))
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
        Ok::<_, SendFailure>((status, body))
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
