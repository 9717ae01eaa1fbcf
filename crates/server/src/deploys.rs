//! Deploys and forward impact: `POST /api/v1/deploys` (CI reports a deploy),
//! `GET /api/v1/deploys` (deploys with their predecessor and commit range) and
//! `GET /api/v1/commits/{sha}/impact` (where a commit shipped).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use model::Deploy;
use serde::Deserialize;
use serde_json::{Value as Json_, json};
use store::{NewDeploy, StoreError, StoredCommit};

use crate::AppState;
use crate::access::Caller;
use crate::api::rfc3339;
use crate::changes::{commit_view, resolve_commit};
use crate::error::{ApiError, ErrorCode, read_capped};
use crate::ui::query_escape;

const MAX_DEPLOY_BODY_BYTES: usize = 64 * 1024;
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;
/// Commits listed per deploy range (the rest are counted as truncated).
const MAX_RANGE_COMMITS: usize = 200;

/// The body of `POST /api/v1/deploys` (PRODUCT.md §3.4).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployRequest {
    service: String,
    environment: String,
    version: String,
    commit: Option<String>,
    repository: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
    deployer: Option<String>,
    #[serde(default)]
    is_rollback: bool,
    url: Option<String>,
}

pub(crate) async fn create_deploy(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<(StatusCode, Json<Json_>), ApiError> {
    let body = read_capped(
        body,
        MAX_DEPLOY_BODY_BYTES,
        "deploy",
        state.settings.connections.body_read_timeout,
    )
    .await?;
    let request: DeployRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "invalid deploy: {e}; send JSON like {{\"service\": \"cart\", \"environment\": \"production\", \"version\": \"1.4.2\"}}"
        ))
    })?;
    let deploy = validate(request, state.clock.now_unix_nanos())?;
    if !caller.visibility.allows(&deploy.service, Some(&deploy.environment)) {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "`{}` may not report deploys of `{}` in `{}`: the token is restricted to other services or environments",
                caller.principal.id, deploy.service, deploy.environment
            ),
        ));
    }
    // The answer shows the previous deploy and the commit range only to a caller who may
    // read the service (a CI token with only the `deploy` scope learns its deploy's id).
    let may_read = match auth::authorize(&caller.principal, auth::Need::ReadData, &state.policy) {
        auth::Decision::Allow(visibility) => {
            visibility.allows(&deploy.service, Some(&deploy.environment))
        }
        auth::Decision::Deny(_) => false,
    };
    let store = Arc::clone(&state.store);
    let state_for_view = Arc::clone(&state);
    let view = tokio::task::spawn_blocking(move || -> Result<Json_, StoreError> {
        let recorded = store.record_deploy(&deploy)?;
        if may_read {
            deploy_view(&state_for_view, &recorded)
        } else {
            Ok(json!({
                "id": recorded.id,
                "service": recorded.service,
                "environment": (!recorded.environment.is_empty()).then_some(&recorded.environment),
                "version": recorded.version,
                "started_at": rfc3339(recorded.started_at_unix_nanos),
                "source": recorded.source.as_str(),
            }))
        }
    })
    .await
    .map_err(ApiError::internal)??;
    Ok((StatusCode::CREATED, Json(view)))
}

fn validate(request: DeployRequest, now_unix_nanos: u64) -> Result<NewDeploy, ApiError> {
    for (field, value) in [
        ("service", &request.service),
        ("environment", &request.environment),
        ("version", &request.version),
    ] {
        if value.trim().is_empty() {
            return Err(ApiError::invalid(format!("`{field}` must not be empty")));
        }
    }
    let time = |field: &str, value: &Option<String>| -> Result<Option<u64>, ApiError> {
        value
            .as_deref()
            .map(|text| {
                text.parse::<jiff::Timestamp>()
                    .ok()
                    .and_then(|t| u64::try_from(t.as_nanosecond()).ok())
                    .ok_or_else(|| {
                        ApiError::invalid(format!(
                            "`{field}` = `{text}` is not an RFC 3339 time; write it like `2026-11-21T09:30:00Z`"
                        ))
                    })
            })
            .transpose()
    };
    let commit = match request.commit.as_deref().map(str::trim) {
        Some(sha) if !model::looks_like_sha(sha) => {
            return Err(ApiError::invalid(format!(
                "`commit` = `{sha}` is not a git commit id; send the full 40-character sha"
            )));
        }
        other => other.map(str::to_ascii_lowercase),
    };
    if let Some(url) = &request.url
        && !is_web_url(url)
    {
        return Err(ApiError::invalid(format!(
            "`url` = `{url}` is not an http(s) URL; send the pipeline's `https://` address"
        )));
    }
    Ok(NewDeploy {
        service: request.service.trim().to_owned(),
        environment: request.environment.trim().to_owned(),
        version: request.version.trim().to_owned(),
        commit,
        repository: request.repository,
        started_at_unix_nanos: time("started_at", &request.started_at)?.unwrap_or(now_unix_nanos),
        finished_at_unix_nanos: time("finished_at", &request.finished_at)?,
        deployer: request.deployer,
        is_rollback: request.is_rollback,
        url: request.url,
    })
}

pub(crate) async fn list_deploys(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Json_>, ApiError> {
    let (mut service, mut environment, mut limit) = (None, None, DEFAULT_LIMIT);
    for (key, value) in params {
        match key.as_str() {
            "service" => service = Some(value),
            "environment" => environment = Some(value),
            "limit" => {
                limit = value.parse().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(
                    || ApiError::invalid(format!("`limit` must be between 1 and {MAX_LIMIT}")),
                )?;
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown parameter `{other}`; use service, environment or limit"
                )));
            }
        }
    }
    let views = tokio::task::spawn_blocking(move || {
        deploys(&state, &caller, service.as_deref(), environment.as_deref(), limit)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(json!({ "deploys": views })))
}

/// Deploys newest first (of one service and environment when given) the caller may see.
pub(crate) fn deploys(
    state: &AppState,
    caller: &Caller,
    service: Option<&str>,
    environment: Option<&str>,
    limit: usize,
) -> Result<Vec<Json_>, StoreError> {
    state
        .store
        .deploys(service, environment, limit)?
        .iter()
        .filter(|d| caller.visibility.allows(&d.service, Some(&d.environment)))
        .map(|d| deploy_view(state, d))
        .collect()
}

pub(crate) async fn commit_impact(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(sha): Path<String>,
) -> Result<Json<Json_>, ApiError> {
    if !model::looks_like_sha(&sha) {
        return Err(ApiError::invalid(format!(
            "`{sha}` is not a commit id; use at least 7 hex digits"
        )));
    }
    let view = tokio::task::spawn_blocking(move || impact(&state, &caller, &sha))
        .await
        .map_err(ApiError::internal)??;
    view.map(Json).ok_or_else(|| {
        ApiError::new(ErrorCode::NotFound, "no such commit is known (from webhooks or mirrors)")
    })
}

/// Where a commit shipped (deploys the caller may see) and links to the traces around each;
/// `None` when the commit is unknown.
pub(crate) fn impact(
    state: &AppState,
    caller: &Caller,
    sha: &str,
) -> Result<Option<Json_>, StoreError> {
    let store = &state.store;
    let Some(stored) = store.find_commit(sha)? else { return Ok(None) };
    let settings = &state.settings.changes;
    let target = stored.commit.sha.as_str();
    let mirror = state.mirrors.get(&stored.repository);
    let mut deploys = store.deploys(None, None, usize::MAX)?;
    deploys.retain(|d| caller.visibility.allows(&d.service, Some(&d.environment)));
    let by_id: HashMap<u64, &Deploy> = deploys.iter().map(|d| (d.id, d)).collect();
    // Whether each deploy's commit is the target or has it in its history (read from the
    // commit's own mirror), worked out once per deploy.
    let mut known: HashMap<u64, Shipping> = HashMap::new();
    let mut shipping = |deploy: &Deploy| -> Result<Shipping, StoreError> {
        if let Some(&found) = known.get(&deploy.id) {
            return Ok(found);
        }
        let shipped = deploy_commit(state, deploy)?;
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
        let mut view = deploy_view(state, deploy)?;
        view["shipped_as"] = how.into();
        view["traces_after"] = traces(&deploy.version).into();
        if let Some(previous) = previous {
            view["traces_before"] = traces(&previous.version).into();
        }
        shipped.push(view);
    }
    // A commit is someone's code: a caller restricted to some services sees it only when one
    // of them lives in its repository or shipped it (otherwise it is not found, as for a
    // commit that does not exist).
    let visibility = &caller.visibility;
    let owns_repository = settings.services.iter().any(|s| {
        s.repository.as_deref() == Some(stored.repository.as_str())
            && visibility.services.as_ref().is_none_or(|v| v.contains(&s.service))
    });
    if !visibility.is_everything() && !owns_repository && shipped.is_empty() {
        return Ok(None);
    }
    Ok(Some(json!({
        "commit": commit_view(settings, &stored),
        "deploys": shipped,
    })))
}

/// How a deploy relates to a commit whose impact is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shipping {
    AsItsCommit,
    InItsHistory,
    No,
}

/// The commit a deploy shipped: its sha, and the stored commit when the graph knows it.
pub(crate) struct DeployCommit {
    pub(crate) sha: Option<String>,
    pub(crate) stored: Option<StoredCommit>,
}

/// Reported, or what the deploy's version resolves to.
pub(crate) fn deploy_commit(state: &AppState, deploy: &Deploy) -> Result<DeployCommit, StoreError> {
    let store = &state.store;
    if let Some(sha) = &deploy.commit {
        let stored = store.find_commit(sha)?;
        let sha = stored.as_ref().map_or_else(|| sha.clone(), |c| c.commit.sha.clone());
        return Ok(DeployCommit { sha: Some(sha), stored });
    }
    if let Some(found) = resolve_commit(state, None, &deploy.service, Some(&deploy.version))? {
        return Ok(DeployCommit { sha: Some(found.commit.sha.clone()), stored: Some(found) });
    }
    let sha = store.version_commit(&deploy.service, &deploy.version)?;
    Ok(DeployCommit { sha, stored: None })
}

/// The commits between two deploys, read from the mirror of `repository` (the newer commit's).
fn range_commits(state: &AppState, repository: &str, from: &str, to: &str) -> Option<Json_> {
    let mirror = state.mirrors.get(repository)?;
    let commits = mirror.range(Some(from), to, MAX_RANGE_COMMITS + 1).ok()?;
    let truncated = commits.len() > MAX_RANGE_COMMITS;
    let listed: Vec<Json_> = commits
        .iter()
        .take(MAX_RANGE_COMMITS)
        .map(|c| {
            json!({
                "sha": c.sha,
                "subject": c.subject(),
                "author": c.author.display(),
                "parents": c.parents,
                "files": c.files.iter().map(|f| json!({"path": f.path, "change": f.kind.as_str()})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Some(json!({"commits": listed, "truncated": truncated}))
}

pub(crate) fn deploy_view(state: &AppState, deploy: &Deploy) -> Result<Json_, StoreError> {
    let store = &state.store;
    let settings = &state.settings.changes;
    let DeployCommit { sha: commit_sha, stored } = deploy_commit(state, deploy)?;
    let commit = stored.as_ref().map(|c| commit_view(settings, c));
    let previous = match deploy.previous_id {
        Some(id) => store.deploy(id)?,
        None => None,
    };
    let previous_commit = match &previous {
        Some(previous) => deploy_commit(state, previous)?.sha,
        None => None,
    };
    let range = match (&previous_commit, &commit_sha) {
        (Some(from), Some(to)) => {
            let mut range = json!({"from": from, "to": to});
            let listed =
                stored.as_ref().and_then(|c| range_commits(state, &c.repository, from, to));
            if let Some(Json_::Object(listed)) = listed {
                range.as_object_mut().expect("built as an object").extend(listed);
            }
            range
        }
        _ => Json_::Null,
    };
    Ok(json!({
        "id": deploy.id,
        "service": deploy.service,
        "environment": (!deploy.environment.is_empty()).then_some(&deploy.environment),
        "version": deploy.version,
        "commit_sha": commit_sha,
        "commit": commit,
        "repository": deploy.repository,
        "started_at": rfc3339(deploy.started_at_unix_nanos),
        "finished_at": deploy.finished_at_unix_nanos.map(rfc3339),
        "deployer": deploy.deployer,
        "is_rollback": deploy.is_rollback,
        "url": deploy.url,
        "source": deploy.source.as_str(),
        "previous": previous.map(|p| json!({"id": p.id, "version": p.version, "commit_sha": previous_commit})),
        "range": range,
    }))
}

/// Whether `url` is an `http://` or `https://` address: the only links pages render.
pub(crate) fn is_web_url(url: &str) -> bool {
    let lower = url.trim_start().get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}
