//! Findings over HTTP: `GET /api/v1/findings` (newest first, filtered), `GET
//! /api/v1/findings/{id}` (everything: numbers, intervals, exemplars, suspects, rollback),
//! and `POST /api/v1/findings/{id}/{acknowledge|resolve|reopen}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value as Json_, json};
use store::{FindingFilter, FindingStatus, StoreError, StoredFinding};

use crate::AppState;
use crate::access::Caller;
use crate::api::rfc3339;
use crate::error::{ApiError, ErrorCode, read_capped};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;
const MAX_STATUS_BODY_BYTES: usize = 16 * 1024;
const VERDICTS: [&str; 4] = ["regressed", "improved", "no_change", "inconclusive"];

pub(crate) async fn list_findings(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Json_>, ApiError> {
    let filter = parse_filter(params)?;
    let limit = filter.limit;
    let findings = tokio::task::spawn_blocking(move || list(&state, &caller, filter))
        .await
        .map_err(ApiError::internal)??;
    let next =
        (findings.len() == limit).then(|| findings.last().map(|f| f["id"].clone())).flatten();
    Ok(Json(json!({"findings": findings, "next": next.map(|id| id.to_string())})))
}

/// Findings matching `filter` within the caller's reach, newest first, without the heavy
/// parts.
pub(crate) fn list(
    state: &AppState,
    caller: &Caller,
    mut filter: FindingFilter,
) -> Result<Vec<Json_>, StoreError> {
    (filter.allowed_services, filter.allowed_environments) = caller.reach();
    Ok(state.store.findings(&filter)?.iter().map(|f| view(f, false)).collect())
}

pub(crate) fn parse_filter(params: Vec<(String, String)>) -> Result<FindingFilter, ApiError> {
    let mut filter = FindingFilter { limit: DEFAULT_LIMIT, ..FindingFilter::default() };
    for (key, value) in params {
        match key.as_str() {
            "service" => filter.service = Some(value),
            "environment" => filter.environment = Some(value),
            "verdict" => {
                if !VERDICTS.contains(&value.as_str()) {
                    return Err(ApiError::invalid(format!(
                        "`verdict` = `{value}` is not one of {}",
                        VERDICTS.join(", ")
                    )));
                }
                filter.verdict = Some(value);
            }
            "status" => {
                filter.status = Some(FindingStatus::parse(&value).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "`status` = `{value}` is not one of open, acknowledged, resolved"
                    ))
                })?);
            }
            "since" => {
                let time = value
                    .parse::<jiff::Timestamp>()
                    .ok()
                    .and_then(|t| u64::try_from(t.as_nanosecond()).ok());
                filter.since_unix_nanos = Some(time.ok_or_else(|| {
                    ApiError::invalid(format!("`since` = `{value}` is not an RFC 3339 time; write it like `2026-11-21T09:30:00Z`"))
                })?);
            }
            "limit" => {
                filter.limit =
                    value.parse().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(
                        || ApiError::invalid(format!("`limit` must be between 1 and {MAX_LIMIT}")),
                    )?;
            }
            "next" => {
                filter.before_id = Some(value.parse().map_err(|_| {
                    ApiError::invalid(format!(
                        "`next` = `{value}` is not a cursor from a previous page"
                    ))
                })?);
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown parameter `{other}`; use service, environment, verdict, status, since, limit or next"
                )));
            }
        }
    }
    Ok(filter)
}

pub(crate) async fn get_finding(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Json_>, ApiError> {
    let id = parse_id(&id)?;
    let found = tokio::task::spawn_blocking(move || finding(&state, &caller, id))
        .await
        .map_err(ApiError::internal)??;
    found.map(Json).ok_or_else(|| not_found(id))
}

/// Everything about one finding, with its deploy; `None` when the caller may not see it.
pub(crate) fn finding(
    state: &AppState,
    caller: &Caller,
    id: u64,
) -> Result<Option<Json_>, StoreError> {
    // A finding the caller may not see does not exist for them.
    let Some(finding) = state.store.finding(id)?.filter(|f| caller.may_see_finding(f)) else {
        return Ok(None);
    };
    let mut full = full_view(state, &finding)?;
    full["notifications"] = crate::notify::finding_notifications(state, &finding)?;
    Ok(Some(full))
}

/// A finding with everything about it and its deploy, for whoever may see it.
pub(crate) fn full_view(state: &AppState, finding: &StoredFinding) -> Result<Json_, StoreError> {
    let mut full = view(finding, true);
    if let Some(deploy) = state.store.deploy(finding.deploy_id)? {
        full["deploy"] = crate::deploys::deploy_view(state, &deploy)?;
    }
    Ok(full)
}

/// The optional body of a status change.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusRequest {
    /// Who is acting, for a server without sign-in (`auth.mode = "none"`); otherwise the
    /// signed-in person or token is recorded.
    by: Option<String>,
    note: Option<String>,
}

pub(crate) async fn change_status(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path((id, action)): Path<(String, String)>,
    body: Body,
) -> Result<Json<Json_>, ApiError> {
    let id = parse_id(&id)?;
    let status = match action.as_str() {
        "acknowledge" => FindingStatus::Acknowledged,
        "resolve" => FindingStatus::Resolved,
        "reopen" => FindingStatus::Open,
        other => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!(
                    "`{other}` is not an action on a finding; use acknowledge, resolve or reopen"
                ),
            ));
        }
    };
    let body = read_capped(
        body,
        MAX_STATUS_BODY_BYTES,
        "finding status",
        state.settings.connections.body_read_timeout,
    )
    .await?;
    let request: StatusRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StatusRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::invalid(format!("invalid status change: {e}; send {{\"by\": \"alice\", \"note\": \"rolled back\"}} or nothing"))
        })?
    };
    let now = state.clock.now_unix_nanos();
    let by = match (caller.principal.kind, request.by) {
        (auth::PrincipalKind::Local, Some(by)) => by,
        _ => caller.principal.id.clone(),
    };
    let changed = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
        if !state.store.finding(id)?.is_some_and(|f| caller.may_see_finding(&f)) {
            return Ok(None);
        }
        let changed =
            state.store.set_finding_status(id, status, &by, request.note.as_deref(), now)?;
        if let Some(finding) = &changed {
            crate::notify::announce_quietly(&state, finding.deploy_id);
        }
        Ok(changed)
    })
    .await
    .map_err(ApiError::internal)??;
    changed.map(|f| Json(view(&f, true))).ok_or_else(|| not_found(id))
}

fn parse_id(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::invalid(format!("`{text}` is not a finding id; ids are numbers")))
}

fn not_found(id: u64) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no finding {id}"))
}

/// A finding as JSON; the list leaves out the heavy parts (evidence, rollback patch).
fn view(finding: &StoredFinding, full: bool) -> Json_ {
    let mut view = json!({
        "id": finding.id,
        "url": format!("/api/v1/findings/{}", finding.id),
        "deploy_id": finding.deploy_id,
        "service": finding.service,
        "environment": (!finding.environment.is_empty()).then_some(&finding.environment),
        "operation": finding.operation,
        "span_kind": finding.span_kind,
        "metric": finding.metric,
        "verdict": finding.verdict,
        "status": finding.status.as_str(),
        "is_final": finding.is_final,
        "look_minutes": finding.look_minutes,
        "first_seen": rfc3339(finding.first_seen_unix_nanos),
        "updated": rfc3339(finding.updated_unix_nanos),
        "status_changed": finding.status_changed_unix_nanos.map(rfc3339),
        "status_by": finding.status_by,
        "status_note": finding.status_note,
    });
    let parse = |text: Option<&str>| match text.map(serde_json::from_str::<Json_>) {
        Some(Ok(Json_::Object(map))) => map,
        _ => serde_json::Map::new(),
    };
    let mut detail = parse(Some(&finding.detail));
    detail.extend(parse(finding.explanation.as_deref()));
    if finding.verdict == "regressed" && finding.explanation.is_none() {
        detail.insert("suspects".into(), Json_::Array(Vec::new()));
    }
    let object = view.as_object_mut().expect("built as an object");
    for (key, value) in detail {
        match key.as_str() {
            "evidence" | "rollback" | "ranking" if !full => {}
            "suspects" if !full => {
                let top: Vec<Json_> =
                    value.as_array().into_iter().flatten().take(3).cloned().collect();
                object.insert(key, top.into());
            }
            _ => {
                object.insert(key, value);
            }
        }
    }
    view
}
