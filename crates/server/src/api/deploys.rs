//! Deploys: `POST /api/v1/deploys` (CI reports a deploy), `GET /api/v1/deploys`,
//! `GET /api/v1/commits/{sha}` (a commit, its review and the tagging gate's answers) and
//! `GET /api/v1/commits/{sha}/impact` (where a commit shipped).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value as Json_, json};
use shapes::CommitImpactJ;
use store::{NewDeploy, StoreError};
use views::rfc3339;

use crate::AppState;
use edge::access::Caller;
use edge::error::{ApiError, ErrorCode, read_capped};

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
    let deploy = validate(request, state.ctx().clock.now_unix_nanos())?;
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
    let may_read =
        match auth::authorize(&caller.principal, auth::Need::ReadData, &state.guard.policy) {
            auth::Decision::Allow(visibility) => {
                visibility.allows(&deploy.service, Some(&deploy.environment))
            }
            auth::Decision::Deny(_) => false,
        };
    let store = Arc::clone(&state.ctx().store);
    let state_for_view = Arc::clone(&state);
    let view = tokio::task::spawn_blocking(move || -> Result<Json_, StoreError> {
        let recorded = store.record_deploy(&deploy)?;
        tracing::info!(
            deploy = recorded.id,
            service = %recorded.service,
            environment = %recorded.environment,
            version = %recorded.version,
            commit = recorded.commit.as_deref().unwrap_or("unknown"),
            source = recorded.source.as_str(),
            "deploy recorded"
        );
        if may_read {
            let view = views::deploys::deploy_view(state_for_view.ctx(), &recorded)?;
            Ok(serde_json::to_value(view).expect("a deploy serialises"))
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
        && !shapes::is_web_url(url)
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
        event: None,
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
        views::deploys::deploys(
            state.ctx(),
            &caller.visibility,
            service.as_deref(),
            environment.as_deref(),
            limit,
        )
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(json!({ "deploys": views })))
}

pub(crate) async fn get_commit(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(sha): Path<String>,
) -> Result<Json<CommitImpactJ>, ApiError> {
    commit_view(state, caller, sha, views::deploys::commit).await
}

pub(crate) async fn commit_impact(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(sha): Path<String>,
) -> Result<Json<CommitImpactJ>, ApiError> {
    commit_view(state, caller, sha, views::deploys::impact).await
}

/// A view of one commit (`None`: not known), for a sha of at least 7 hex digits.
async fn commit_view(
    state: Arc<AppState>,
    caller: Caller,
    sha: String,
    view: fn(
        &views::Context,
        &views::Visibility,
        &str,
    ) -> Result<Option<CommitImpactJ>, StoreError>,
) -> Result<Json<CommitImpactJ>, ApiError> {
    if !model::looks_like_sha(&sha) {
        return Err(ApiError::invalid(format!(
            "`{sha}` is not a commit id; use at least 7 hex digits"
        )));
    }
    let found = tokio::task::spawn_blocking(move || view(state.ctx(), &caller.visibility, &sha))
        .await
        .map_err(ApiError::internal)??;
    found.map(Json).ok_or_else(|| {
        ApiError::new(ErrorCode::NotFound, "no such commit is known (from webhooks or mirrors)")
    })
}

const MAX_DEPLOY_BODY_BYTES: usize = 64 * 1024;

const DEFAULT_LIMIT: usize = 100;

const MAX_LIMIT: usize = 10_000;

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
