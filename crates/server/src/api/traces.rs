//! `GET /api/v1/traces/{id}`, `GET /api/v1/traces` (search) and `GET /api/v1/services`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use model::TraceId;
use serde_json::{Value as Json_, json};

use crate::AppState;
use edge::access::Caller;
use edge::error::{ApiError, ErrorCode};

pub(crate) async fn search_traces(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Json_>, ApiError> {
    let now = state.ctx().clock.now_unix_nanos();
    let query = views::traces::parse_search(&params, now)?;
    let traces = tokio::task::spawn_blocking(move || {
        views::traces::search(state.ctx(), &caller.visibility, query)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(json!({ "traces": traces })))
}

pub(crate) async fn list_services(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Json_>, ApiError> {
    let services = tokio::task::spawn_blocking(move || {
        views::traces::services(state.ctx(), &caller.visibility)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(json!({ "services": services })))
}

pub(crate) async fn get_trace(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(trace_id): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Json_>, ApiError> {
    let id = TraceId::from_hex(&trace_id).map_err(|e| {
        ApiError::invalid(format!("`{trace_id}` is not a trace id ({e}); expected 32 hex digits"))
    })?;
    let mut blame_lines = false;
    for (key, value) in params {
        match (key.as_str(), value.as_str()) {
            ("blame", "lines") => blame_lines = true,
            ("blame", other) => {
                return Err(ApiError::invalid(format!(
                    "`blame` = `{other}`: the only value is `lines` (each line of a span's function with the commit that last changed it)"
                )));
            }
            (other, _) => {
                return Err(ApiError::invalid(format!(
                    "unknown parameter `{other}`; a trace takes only `blame=lines`"
                )));
            }
        }
    }
    let views = tokio::task::spawn_blocking(move || {
        views::traces::trace_spans(state.ctx(), &caller.visibility, &id, blame_lines)
    })
    .await
    .map_err(ApiError::internal)??;
    if views.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no spans stored for trace `{trace_id}`"),
        ));
    }
    Ok(Json(json!({
        "trace_id": id.to_hex(),
        "spans": views,
    })))
}
