//! Incidents: `GET /api/v1/incidents` (newest first; `status=open` by default), `GET
//! /api/v1/incidents/{id}` (a deploy's regressions as one: the table, the suspects once, the
//! rollback draft), `POST /api/v1/incidents/{id}/{acknowledge|resolve|reopen}`, which sets
//! the status of every regression of the deploy the caller may see, with who, when and the
//! note, and `POST /api/v1/incidents/{id}/revert`, which proposes the revert of the suspects
//! the incident shows (those of its explained finding).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{Value as Json_, json};
use shapes::{IncidentJ, RevertProposedJ};
use store::StoreError;

use super::findings::StatusChange;
use crate::AppState;
use edge::access::Caller;
use edge::error::{ApiError, ErrorCode};

pub(crate) async fn list_incidents(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Json_>, ApiError> {
    let filter = views::incidents::parse_filter(params)?;
    let incidents = tokio::task::spawn_blocking(move || {
        views::incidents::list(state.ctx(), &caller.visibility, &filter)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(json!({ "incidents": incidents })))
}

pub(crate) async fn get_incident(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<IncidentJ>, ApiError> {
    let id = parse_id(&id)?;
    let found = tokio::task::spawn_blocking(move || {
        views::incidents::incident(state.ctx(), &caller.visibility, id)
    })
    .await
    .map_err(ApiError::internal)??;
    found.map(Json).ok_or_else(|| not_found(id))
}

pub(crate) async fn change_status(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path((id, action)): Path<(String, String)>,
    body: Body,
) -> Result<Json<IncidentJ>, ApiError> {
    let id = parse_id(&id)?;
    let change = StatusChange::read(&state, &caller, &action, "an incident", body).await?;
    let StatusChange { status, by, note, now } = change;
    let view = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
        let ctx = state.ctx();
        let findings = views::incidents::regressed_of(ctx, &caller.visibility, id)?;
        if findings.is_empty() {
            return Ok(None);
        }
        for finding in &findings {
            ctx.store.set_finding_status(finding.id, status, &by, note.as_deref(), now)?;
        }
        jobs::notify::announce_quietly(&state.jobs, id);
        views::incidents::incident(ctx, &caller.visibility, id)
    })
    .await
    .map_err(ApiError::internal)??;
    view.map(Json).ok_or_else(|| not_found(id))
}

fn parse_id(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::invalid(format!("`{text}` is not an incident id; ids are numbers (a deploy's)"))
    })
}

fn not_found(id: u64) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no incident {id}: deploy {id} has no regression you may see"),
    )
}

pub(crate) async fn propose_revert(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<RevertProposedJ>), ApiError> {
    let id: u64 = id.parse().map_err(|_| {
        ApiError::invalid(format!("`{id}` is not an incident id; ids are numbers (the deploy's)"))
    })?;
    let lookup = (Arc::clone(&state), caller.clone());
    let finding = tokio::task::spawn_blocking(move || {
        let (state, caller) = lookup;
        views::incidents::incident(state.ctx(), &caller.visibility, id)
    })
    .await
    .map_err(ApiError::internal)??
    .ok_or_else(|| not_found(id))?;
    let finding = finding.explained_by_finding.ok_or_else(|| {
        ApiError::new(
            ErrorCode::Conflict,
            format!("incident {id} is not explained yet: there are no suspects to revert"),
        )
    })?;
    super::findings::propose(state, caller, finding, body).await
}
