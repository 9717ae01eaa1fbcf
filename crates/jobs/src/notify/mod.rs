//! Notifications: findings sent back to where people work. When a deploy's regression is
//! explained, and again when it is resolved, spanblame decides what to send (alerts to
//! Alertmanager and webhooks, a comment on each suspect's review, a commit status) and
//! writes each message to the store's outbox under an idempotency key; [`deliver`] sends
//! them with retries.
//!
//! Deciding is a pure function of the stored findings, so it is safe to repeat: detection and
//! status changes call [`announce_deploy`] at once, and the delivery job calls
//! [`announce_recent`] every half minute, which catches a decision a crash interrupted. What
//! was decided once is never sent twice, because its key is already in the outbox.
//!
//! Granularity, per jobs change:
//! - an alert per finding (its labels identify it), `firing` once and `resolved` once; an
//!   Alertmanager alert is also refreshed every `alert_refresh`, since Alertmanager expires an
//!   alert at its `endsAt` (it follows a reopened finding that way);
//! - a comment per deploy and suspect review (or commit without one): one when the deploy's
//!   first regression is explained, listing the regressions known then, and one when all of
//!   them are resolved; a commit status on the suspect commit alongside each.

mod deliver;
pub mod message;
mod sinks;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use message::{AlertState, Links, Markup};
use model::ForgeKind;
use serde_json::Value as Json_;
use shapes::{FindingJ, SuspectJ};
use store::{FindingFilter, FindingStatus, NewDelivery, StoreError, StoredFinding};
use tokio::sync::Semaphore;
use views::rfc3339;

pub use deliver::deliver_due;
pub use sinks::{AlertSink, SinkAuth};

use crate::Jobs;

/// Where findings go and how hard spanblame tries; `Default` sends nothing.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub alertmanagers: Vec<AlertSink>,
    pub webhooks: Vec<AlertSink>,
    /// Per forge integration: whether to comment and set statuses.
    pub forges: Vec<ForgeNotify>,
    /// Per repository: the integration it lives on and its path there.
    pub repositories: Vec<RepositoryForge>,
    /// Per service: tier and switches.
    pub services: Vec<ServiceNotify>,
    pub retry: RetrySettings,
    /// How often a firing alert is sent to Alertmanager again (it expires after four times
    /// this without a refresh).
    pub alert_refresh: Duration,
}

impl Default for NotifySettings {
    fn default() -> NotifySettings {
        NotifySettings {
            alertmanagers: Vec::new(),
            webhooks: Vec::new(),
            forges: Vec::new(),
            repositories: Vec::new(),
            services: Vec::new(),
            retry: RetrySettings::default(),
            alert_refresh: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ForgeNotify {
    pub integration: String,
    pub comments: bool,
    pub statuses: bool,
    /// The tagging gate's status on each new pull/merge request head (`gate_on_reviews`).
    pub gate: bool,
}

#[derive(Debug, Clone)]
pub struct RepositoryForge {
    pub repository: String,
    pub integration: String,
    /// `owner/name` on the forge (GitLab: the full project path; Phabricator: the monogram).
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct ServiceNotify {
    pub service: String,
    /// 1 is the most critical; alert severity depends on it.
    pub tier: u8,
    /// Review comments and statuses for this service's findings (where the forge has them on).
    pub comments: bool,
    pub alerts: bool,
}

/// The tier of a service that does not say.
pub const DEFAULT_TIER: u8 = 2;

#[derive(Debug, Clone)]
pub struct RetrySettings {
    /// Attempts before a delivery is dead-lettered.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetrySettings {
    fn default() -> RetrySettings {
        RetrySettings {
            max_attempts: 12,
            initial_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(30 * 60),
        }
    }
}

impl NotifySettings {
    fn service(&self, name: &str) -> ServiceNotify {
        self.services.iter().find(|s| s.service == name).cloned().unwrap_or(ServiceNotify {
            service: name.to_owned(),
            tier: DEFAULT_TIER,
            comments: true,
            alerts: true,
        })
    }
}

/// A regressed, explained finding as notifications see it.
struct Announced {
    stored: StoredFinding,
    view: FindingJ,
    /// Whether the top suspect is clearly ahead (else the second is named too).
    separated: bool,
}

impl Announced {
    fn resolved(&self) -> bool {
        self.stored.status == FindingStatus::Resolved
    }

    /// The suspects this finding points at, with their rank.
    fn named_suspects(&self) -> impl Iterator<Item = (usize, &SuspectJ)> {
        let named = if self.separated { 1 } else { 2 };
        self.view.suspects().iter().take(named).enumerate().map(|(i, s)| (i + 1, s))
    }
}

/// Decides the notifications of one deploy's regressions and enqueues those not decided
/// before. Returns how many were added.
pub fn announce_deploy(jobs: &Jobs, deploy_id: u64) -> Result<usize, StoreError> {
    let settings = &jobs.notifications;
    if settings.alertmanagers.is_empty()
        && settings.webhooks.is_empty()
        && settings.forges.is_empty()
    {
        return Ok(0); // nobody to tell
    }
    let store = &jobs.ctx.store;
    let now = jobs.ctx.clock.now_unix_nanos();
    let announced = announced(jobs, deploy_id)?;
    let Some(first) = announced.first() else { return Ok(0) };
    let service = settings.service(&first.stored.service);
    let base = jobs.base_url();
    let links = Links { base_url: &base };
    let mut out = Vec::new();
    if service.alerts {
        for finding in &announced {
            alerts(jobs, finding, service.tier, &links, now, &mut out)?;
        }
    }
    if service.comments {
        forge_notes(jobs, &announced, &links, Notes::Notifier, &mut out)?;
    }
    store.enqueue_deliveries(&out, now)
}

/// A deploy's explained regressions, oldest first (a deploy's comments are filed under its
/// first explained regression).
fn announced(jobs: &Jobs, deploy_id: u64) -> Result<Vec<Announced>, StoreError> {
    let regressed = jobs.ctx.store.findings(&FindingFilter {
        deploy_id: Some(deploy_id),
        verdict: Some("regressed".into()),
        severity: jobs.ctx.incident_severity(),
        limit: 10_000,
        ..FindingFilter::default()
    })?;
    let mut announced = Vec::new();
    for stored in regressed.into_iter().rev().filter(|f| f.explanation.is_some()) {
        let view = views::findings::full_view(&jobs.ctx, &stored)?;
        let separated = view.explanation.ranking.as_ref().is_some_and(|r| r.separated);
        announced.push(Announced { stored, view, separated });
    }
    Ok(announced)
}

/// A suspect's review flagged on request (`flag_review`): the comment the notifier posts, under
/// the same idempotency key, so the review gets it once whoever asks first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flagged {
    /// The review (`PR #42`, `D12`) or commit the comment goes to.
    pub target: String,
    pub integration: String,
    pub idempotency_key: String,
    /// Whether this request enqueued it (else it was decided before, by the notifier or an
    /// earlier request).
    pub new: bool,
}

/// Posts the finding's evidence on its suspect's review (the suspect whose commit starts with
/// `commit`, else the top one), through the outbox, whatever the integration's
/// `comment_on_findings`: an explicit request. `Err` says why not, for the person asking.
pub fn flag_review(
    jobs: &Jobs,
    finding_id: u64,
    commit: Option<&str>,
) -> Result<Result<Flagged, String>, StoreError> {
    let Some(stored) = jobs.ctx.store.finding(finding_id)? else {
        return Ok(Err(format!("no finding {finding_id}")));
    };
    if stored.verdict != "regressed" {
        return Ok(Err(format!(
            "finding {finding_id} is `{}`: only a regression is flagged on a review",
            stored.verdict
        )));
    }
    if stored.status == FindingStatus::Resolved {
        return Ok(Err(format!("finding {finding_id} is resolved: there is nothing to flag")));
    }
    if stored.explanation.is_none() {
        return Ok(Err(format!(
            "finding {finding_id} is not explained yet (its suspects are being ranked); try again in a minute"
        )));
    }
    let announced = announced(jobs, stored.deploy_id)?;
    let Some(this) = announced.iter().find(|a| a.stored.id == finding_id) else {
        return Ok(Err(format!(
            "finding {finding_id} is a minor regression: it opens no incident, so it is not posted (set `detection.minor_incidents = true` to change that)"
        )));
    };
    let wanted = commit.map(str::to_ascii_lowercase);
    let suspect = this
        .view
        .suspects()
        .iter()
        .find(|s| wanted.as_deref().is_none_or(|w| s.commit.sha.starts_with(w)));
    let Some(suspect) = suspect else {
        return Ok(Err(match commit {
            Some(commit) => format!("commit {commit} is not a suspect of finding {finding_id}"),
            None => format!("finding {finding_id} names no suspect commit"),
        }));
    };
    if forge_target(jobs, suspect, true).is_none() {
        return Ok(Err(format!(
            "repository `{}` has no forge to post to: set `integration` on its `[[repositories]]` entry, and `api_url` and `api_token_env` on that integration",
            suspect.commit.repository
        )));
    }
    let base = jobs.base_url();
    let links = Links { base_url: &base };
    let mut out = Vec::new();
    let sha = suspect.commit.sha.clone();
    forge_notes(jobs, &announced, &links, Notes::Flag { sha: &sha }, &mut out)?;
    let Some(row) = out.into_iter().next() else {
        return Ok(Err(format!(
            "the forge of repository `{}` takes no comment on this review or commit",
            suspect.commit.repository
        )));
    };
    let store = &jobs.ctx.store;
    let added =
        store.enqueue_deliveries(std::slice::from_ref(&row), jobs.ctx.clock.now_unix_nanos())?;
    Ok(Ok(Flagged {
        target: row.target,
        integration: row.sink.trim_start_matches("forge:").to_owned(),
        idempotency_key: row.idempotency_key,
        new: added > 0,
    }))
}

/// Announces every deploy whose notifications may be due: open regressions (whose
/// Alertmanager alerts need refreshing) and those resolved in the last week.
pub fn announce_recent(jobs: &Jobs) -> Result<usize, StoreError> {
    const WEEK_NANOS: u64 = 7 * 24 * 3600 * 1_000_000_000;
    let now = jobs.ctx.clock.now_unix_nanos();
    let mut added = 0;
    for deploy_id in jobs.ctx.store.deploys_to_announce(now.saturating_sub(WEEK_NANOS))? {
        added += announce_deploy(jobs, deploy_id)?;
    }
    // Refreshes are decided anew each period; a day of them is plenty to look back at.
    jobs.ctx.store.prune_deliveries("alert:%:refresh:%", now.saturating_sub(WEEK_NANOS / 7))?;
    Ok(added)
}

/// A stored request: the shape the delivery job reads for every receiver.
fn request(path: &str, body: Json_) -> String {
    let request = forge::api::ApiRequest { method: "POST".into(), path: path.to_owned(), body };
    serde_json::to_string(&request).unwrap_or_default()
}

/// Alerts for one finding on every configured alert sink.
fn alerts(
    jobs: &Jobs,
    finding: &Announced,
    tier: u8,
    links: &Links<'_>,
    now: u64,
    out: &mut Vec<NewDelivery>,
) -> Result<(), StoreError> {
    let settings = &jobs.notifications;
    let store = &jobs.ctx.store;
    let id = finding.stored.id;
    let f = &finding.view;
    let name = message::alert_name(&f.metric);
    let summary = message::headline(f);
    let delivery =
        |key: String, sink: &str, body: Json_, path: &str, supersedes: Vec<String>| NewDelivery {
            idempotency_key: key,
            sink: sink.to_owned(),
            kind: "alert".into(),
            finding_id: Some(id),
            deploy_id: Some(finding.stored.deploy_id),
            target: name.to_owned(),
            summary: summary.clone(),
            request: request(path, body),
            supersedes,
        };
    let resolved_at = finding.stored.status_changed_unix_nanos.unwrap_or(now);
    let resolved_text = rfc3339(resolved_at);
    for hook in &settings.webhooks {
        let sink = format!("webhook:{}", hook.name);
        let firing_key = format!("alert:{id}:firing:{sink}");
        if !finding.resolved() {
            let body = message::webhook_body(f, tier, links, AlertState::Firing { ends_at: "" });
            out.push(delivery(firing_key, &sink, body, "", Vec::new()));
        } else if store.delivery_by_key(&firing_key)?.is_some() {
            let body =
                message::webhook_body(f, tier, links, AlertState::Resolved { at: &resolved_text });
            let key = format!("alert:{id}:resolved:{sink}");
            out.push(delivery(key, &sink, body, "", vec![firing_key]));
        }
    }
    let refresh_nanos = settings.alert_refresh.as_nanos().max(1) as u64;
    let bucket = now / refresh_nanos;
    let ends_at = rfc3339(now + 4 * refresh_nanos);
    for am in &settings.alertmanagers {
        let sink = format!("alertmanager:{}", am.name);
        let firing_key = format!("alert:{id}:firing:{sink}");
        let refresh_key = |bucket: u64| format!("alert:{id}:refresh:{sink}:{bucket}");
        let path = "/api/v2/alerts";
        let fired = store.delivery_by_key(&firing_key)?;
        if !finding.resolved() {
            let body = message::alertmanager_body(
                f,
                tier,
                links,
                AlertState::Firing { ends_at: &ends_at },
            );
            match fired {
                None => out.push(delivery(firing_key, &sink, body, path, Vec::new())),
                Some(fired) if fired.created_unix_nanos / refresh_nanos < bucket => {
                    let older = vec![refresh_key(bucket - 1), firing_key];
                    out.push(delivery(refresh_key(bucket), &sink, body, path, older));
                }
                Some(_) => {}
            }
        } else if fired.is_some() {
            let body = message::alertmanager_body(
                f,
                tier,
                links,
                AlertState::Resolved { at: &resolved_text },
            );
            let key = format!("alert:{id}:resolved:{sink}:{resolved_at}");
            let older =
                vec![firing_key, refresh_key(bucket), refresh_key(bucket.saturating_sub(1))];
            out.push(delivery(key, &sink, body, path, older));
        }
    }
    Ok(())
}

/// Where a suspect's comment goes: the integration, its forge kind and repository path.
struct ForgeTarget {
    integration: String,
    kind: ForgeKind,
    repository_path: String,
    comments: bool,
    statuses: bool,
}

/// Where a suspect's notes go. The notifier follows the integration's settings; a flag
/// asked for explicitly needs only the integration's API access, and posts a comment.
fn forge_target(jobs: &Jobs, suspect: &SuspectJ, flagged: bool) -> Option<ForgeTarget> {
    let settings = &jobs.notifications;
    let repository =
        settings.repositories.iter().find(|r| r.repository == suspect.commit.repository)?;
    let integration =
        jobs.ctx.changes.integrations.iter().find(|i| i.name == repository.integration)?;
    let target = |comments, statuses| ForgeTarget {
        integration: integration.name.clone(),
        kind: integration.kind,
        repository_path: repository.path.clone(),
        comments,
        statuses,
    };
    if flagged {
        return (integration.api_url.is_some() && integration.api_token.is_some())
            .then(|| target(true, false));
    }
    let wanted = settings.forges.iter().find(|f| f.integration == repository.integration)?;
    (wanted.comments || wanted.statuses).then(|| target(wanted.comments, wanted.statuses))
}

/// Whose notes `forge_notes` decides.
#[derive(Clone, Copy)]
enum Notes<'a> {
    /// The notifier's: each named suspect's target, as its integration is set.
    Notifier,
    /// One suspect's review (or commit) flagged on request: its comment only.
    Flag { sha: &'a str },
}

/// Review comments and commit statuses for a deploy's regressions: one per suspect target.
fn forge_notes(
    jobs: &Jobs,
    announced: &[Announced],
    links: &Links<'_>,
    notes: Notes<'_>,
    out: &mut Vec<NewDelivery>,
) -> Result<(), StoreError> {
    let store = &jobs.ctx.store;
    let Some(deploy) = announced.first().and_then(|a| a.view.deploy.clone()) else {
        return Ok(());
    };
    let deploy_id = announced[0].stored.deploy_id;
    // Each target (a review, or a commit without one) with the best rank it was named at.
    let mut targets: BTreeMap<(String, String), (usize, SuspectJ, ForgeTarget)> = BTreeMap::new();
    for finding in announced {
        let suspects: Vec<(usize, &SuspectJ)> = match notes {
            Notes::Notifier => finding.named_suspects().collect(),
            Notes::Flag { sha } => finding
                .view
                .suspects()
                .iter()
                .enumerate()
                .filter(|(_, s)| s.commit.sha == sha)
                .map(|(i, s)| (i + 1, s))
                .collect(),
        };
        for (rank, suspect) in suspects {
            let flagged = matches!(notes, Notes::Flag { .. });
            let Some(target) = forge_target(jobs, suspect, flagged) else { continue };
            let review = suspect
                .review
                .as_ref()
                .filter(|r| ForgeKind::parse(&r.kind) == Some(target.kind))
                .map(|r| r.id.clone());
            let key =
                (target.integration.clone(), review.unwrap_or_else(|| suspect.commit.sha.clone()));
            if targets.get(&key).is_none_or(|(best, ..)| rank < *best) {
                targets.insert(key, (rank, suspect.clone(), target));
            }
        }
    }
    let open: Vec<&FindingJ> =
        announced.iter().filter(|a| !a.resolved()).map(|a| &a.view).collect();
    let all: Vec<&FindingJ> = announced.iter().map(|a| &a.view).collect();
    for ((integration, target_id), (rank, suspect, target)) in targets {
        let sink = format!("forge:{integration}");
        let markup =
            if target.kind == ForgeKind::Phabricator { Markup::Remarkup } else { Markup::Markdown };
        let is_review = target_id != suspect.commit.sha;
        let forge_target = if is_review {
            forge::api::Target::Review(&target_id)
        } else {
            forge::api::Target::Commit(&suspect.commit.sha)
        };
        let label = match suspect.review.as_ref().filter(|_| is_review) {
            Some(review) => review.label(),
            None => format!("commit {}", suspect.commit.short()),
        };
        let regressed_key = format!("comment:{deploy_id}:regressed:{integration}:{target_id}");
        let (state_word, text) = if !open.is_empty() {
            ("regressed", message::regressed_comment(&deploy, &open, &suspect, rank, markup, links))
        } else if store.delivery_by_key(&regressed_key)?.is_some() {
            ("resolved", message::resolved_comment(&deploy, &all, markup, links))
        } else {
            continue;
        };
        let summary = |what: &str| {
            format!(
                "{what} on {label}: deploy {} of {} {state_word}",
                deploy.version, deploy.service
            )
        };
        let row = |key: String, kind: &str, what: &str, api: forge::api::ApiRequest| NewDelivery {
            idempotency_key: key,
            sink: sink.clone(),
            kind: kind.into(),
            finding_id: Some(announced[0].stored.id),
            deploy_id: Some(deploy_id),
            target: label.clone(),
            summary: summary(what),
            request: serde_json::to_string(&api).unwrap_or_default(),
            supersedes: Vec::new(),
        };
        if target.comments
            && let Some(request) =
                forge::api::comment(target.kind, &target.repository_path, &forge_target, &text)
        {
            let key = format!("comment:{deploy_id}:{state_word}:{integration}:{target_id}");
            out.push(row(key, "comment", "comment", request));
        }
        let (status, statuses) = if state_word == "regressed" {
            (forge::api::StatusState::Failure, &open)
        } else {
            (forge::api::StatusState::Success, &all)
        };
        if target.statuses
            && let Some(request) = forge::api::status(
                target.kind,
                &target.repository_path,
                &suspect.commit.sha,
                status,
                &format!(
                    "spanblame/{}/{}",
                    deploy.service,
                    deploy.environment.as_deref().unwrap_or("none")
                ),
                &message::status_description(statuses, state_word == "resolved"),
                &links.deploy(deploy_id),
            )
        {
            let key =
                format!("status:{deploy_id}:{state_word}:{integration}:{}", suspect.commit.sha);
            let mut row = row(key, "status", "commit status", request);
            row.target = format!("commit {}", suspect.commit.short());
            out.push(row);
        }
    }
    Ok(())
}

/// A deploy whose findings changed: announce it, logging (not failing) when the store
/// refuses; the delivery job's periodic pass decides again.
pub fn announce_quietly(jobs: &Jobs, deploy_id: u64) {
    if let Err(e) = announce_deploy(jobs, deploy_id) {
        tracing::warn!(deploy = deploy_id, error = %e, "could not decide notifications yet; the delivery job retries");
    }
}

/// Deliveries sent at once.
const CONCURRENT_DELIVERIES: usize = 16;

/// How often the job decides notifications again from the stored findings.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(30);

/// The notification job: on the lease's holder, decides again every [`ANNOUNCE_EVERY`] and
/// sends what is due every second, each row on its own task.
pub async fn run_deliveries(jobs: Arc<Jobs>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let in_flight: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let slots = Arc::new(Semaphore::new(CONCURRENT_DELIVERIES));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut announced_at: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        // Deciding and sending happen on one replica: the background lease's holder.
        if !jobs.lease.is_held() {
            announced_at = None;
            continue;
        }
        if announced_at.is_none_or(|at| at.elapsed() >= ANNOUNCE_EVERY) {
            announced_at = Some(Instant::now());
            let jobs = Arc::clone(&jobs);
            match tokio::task::spawn_blocking(move || announce_recent(&jobs)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "deciding notifications failed; will retry")
                }
                Err(e) => {
                    tracing::error!(error = %e, "deciding notifications panicked; will retry")
                }
            }
        }
        let due = {
            let jobs = Arc::clone(&jobs);
            let now = jobs.ctx.clock.now_unix_nanos();
            tokio::task::spawn_blocking(move || jobs.ctx.store.due_deliveries(now, 256)).await
        };
        let due = match due {
            Ok(Ok(due)) => due,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading the outbox failed; will retry");
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the outbox panicked; will retry");
                continue;
            }
        };
        for delivery in due {
            if !in_flight.lock().unwrap_or_else(|e| e.into_inner()).insert(delivery.id) {
                continue;
            }
            let (jobs, in_flight, slots) =
                (Arc::clone(&jobs), Arc::clone(&in_flight), Arc::clone(&slots));
            tokio::spawn(async move {
                let id = delivery.id;
                if let Ok(_slot) = slots.acquire().await
                    && let Err(e) = deliver::deliver_one(&jobs, delivery).await
                {
                    tracing::warn!(delivery = id, error = %e, "could not record a delivery attempt; it will be sent again");
                }
                in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            });
        }
    }
}
