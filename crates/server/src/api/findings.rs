//! Findings: `GET /api/v1/findings` (newest first, filtered), `GET /api/v1/findings/{id}`
//! (everything: numbers, intervals, exemplars, suspects, rollback),
//! `POST /api/v1/findings/{id}/{acknowledge|resolve|reopen}`, and
//! `POST /api/v1/findings/{id}/revert` (propose the suspects' revert on the forge).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value as Json_, json};
use shapes::{FindingJ, RevertProposedJ};
use store::FindingStatus;

use crate::AppState;
use edge::access::Caller;
use edge::error::{ApiError, ErrorCode, read_capped};

pub(crate) async fn get_finding(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<FindingJ>, ApiError> {
    let id = parse_id(&id)?;
    let found = tokio::task::spawn_blocking(move || {
        views::findings::finding(state.ctx(), &caller.visibility, id)
    })
    .await
    .map_err(ApiError::internal)??;
    found.map(Json).ok_or_else(|| not_found(id))
}

/// A status change as asked: the new status, who, an optional note, and when.
pub(super) struct StatusChange {
    pub(super) status: FindingStatus,
    pub(super) by: String,
    pub(super) note: Option<String>,
    pub(super) now: u64,
}

impl StatusChange {
    /// Reads `acknowledge|resolve|reopen` and the optional body `{"by", "note"}` of a status
    /// change on `what` (a finding, an incident).
    pub(super) async fn read(
        state: &AppState,
        caller: &Caller,
        action: &str,
        what: &str,
        body: Body,
    ) -> Result<StatusChange, ApiError> {
        let status = match action {
            "acknowledge" => FindingStatus::Acknowledged,
            "resolve" => FindingStatus::Resolved,
            "reopen" => FindingStatus::Open,
            other => {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!(
                        "`{other}` is not an action on {what}; use acknowledge, resolve or reopen"
                    ),
                ));
            }
        };
        let request: StatusRequest = read_optional_body(
            state,
            body,
            "status change",
            r#"{"by": "alice", "note": "rolled back"}"#,
        )
        .await?;
        let by = acting_as(caller, request.by);
        Ok(StatusChange { status, by, note: request.note, now: state.ctx().clock.now_unix_nanos() })
    }
}

/// A small optional JSON body (a status change, a revert proposal): empty is the default; the
/// error shows `example`.
async fn read_optional_body<T: Default + serde::de::DeserializeOwned>(
    state: &AppState,
    body: Body,
    what: &str,
    example: &str,
) -> Result<T, ApiError> {
    let body = read_capped(
        body,
        MAX_STATUS_BODY_BYTES,
        what,
        state.settings.connections.body_read_timeout,
    )
    .await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("invalid {what}: {e}; send {example} or nothing")))
}

/// Who is acting: the body's `by` on a server without sign-in, else the signed-in person or
/// token.
fn acting_as(caller: &Caller, by: Option<String>) -> String {
    match (caller.principal.kind, by) {
        (auth::PrincipalKind::Local, Some(by)) => by,
        _ => caller.principal.id.clone(),
    }
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
) -> Result<Json<FindingJ>, ApiError> {
    let id = parse_id(&id)?;
    let change = StatusChange::read(&state, &caller, &action, "a finding", body).await?;
    let StatusChange { status, by, note, now } = change;
    let changed = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let Some(finding) = state
            .ctx()
            .store
            .finding(id)?
            .filter(|f| views::findings::may_see_finding(&caller.visibility, f))
        else {
            return Ok(None);
        };
        if finding.verdict != "regressed" {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "finding {id} is `{}`, not a regression; only a regression is acknowledged or resolved",
                    finding.verdict
                ),
            ));
        }
        let changed =
            state.ctx().store.set_finding_status(id, status, &by, note.as_deref(), now)?;
        if let Some(finding) = &changed {
            jobs::notify::announce_quietly(&state.jobs, finding.deploy_id);
        }
        Ok(changed)
    })
    .await
    .map_err(ApiError::internal)??;
    changed.map(|f| Json(views::findings::view(&f, true))).ok_or_else(|| not_found(id))
}

/// The optional body of a revert proposal.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevertRequest {
    /// Suspects' shas (or prefixes) to revert together; default: the top suspect.
    #[serde(default)]
    commits: Vec<String>,
    /// Who is asking, for a server without sign-in; otherwise the signed-in person or token.
    by: Option<String>,
}

pub(crate) async fn propose_revert(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<RevertProposedJ>), ApiError> {
    let id = parse_id(&id)?;
    propose(state, caller, id, body).await
}

/// Proposes the revert of finding `id`'s suspects as `caller` asks in `body` (findings, and an
/// incident through its explained finding).
pub(super) async fn propose(
    state: Arc<AppState>,
    caller: Caller,
    id: u64,
    body: Body,
) -> Result<(StatusCode, Json<RevertProposedJ>), ApiError> {
    let request: RevertRequest = read_optional_body(
        &state,
        body,
        "revert proposal",
        r#"{"commits": ["1a2b3c4d"]} (the top suspect when there is no body)"#,
    )
    .await?;
    if let Some(bad) = request.commits.iter().find(|c| !model::looks_like_sha(c)) {
        return Err(ApiError::invalid(format!("`{bad}` in `commits` is not a commit sha")));
    }
    let by = acting_as(&caller, request.by);
    let proposed = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let visible = state
            .ctx()
            .store
            .finding(id)?
            .is_some_and(|f| views::findings::may_see_finding(&caller.visibility, &f));
        if !visible {
            return Ok(Err(jobs::revert::Refused::NotFound(format!("no finding {id}"))));
        }
        Ok(jobs::revert::propose(&state.jobs, id, &request.commits, &by)?)
    })
    .await
    .map_err(ApiError::internal)??;
    match proposed {
        Ok(proposed) => Ok((StatusCode::ACCEPTED, Json(proposed.view()))),
        Err(refused) => {
            let code = match refused {
                jobs::revert::Refused::NotFound(_) => ErrorCode::NotFound,
                jobs::revert::Refused::Conflict(_) | jobs::revert::Refused::Unsupported(_) => {
                    ErrorCode::Conflict
                }
            };
            Err(ApiError::new(code, refused.message().to_owned()))
        }
    }
}

/// A queued revert proposal as the API and MCP show it.
fn parse_id(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::invalid(format!("`{text}` is not a finding id; ids are numbers")))
}

fn not_found(id: u64) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no finding {id}"))
}

const MAX_STATUS_BODY_BYTES: usize = 16 * 1024;

pub(crate) async fn list_findings(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Json_>, ApiError> {
    let filter = views::findings::parse_filter(params)?;
    let limit = filter.limit;
    let findings = tokio::task::spawn_blocking(move || {
        views::findings::list(state.ctx(), &caller.visibility, filter)
    })
    .await
    .map_err(ApiError::internal)??;
    let next = (findings.len() == limit).then(|| findings.last().map(|f| f.id)).flatten();
    Ok(Json(json!({"findings": findings, "next": next.map(|id| id.to_string())})))
}
