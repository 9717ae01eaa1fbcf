//! Jaeger's query API under `/jaeger` (so it never meets Tempo's `/api/traces/{id}`), for
//! Jaeger's UI and Grafana's Jaeger data source with the URL `http://spanblame:4318/jaeger`:
//! services, operations, trace search and a trace by id, from `compat::jaeger` within the
//! caller's reach. Its own errors are in Jaeger's envelope, which its UI shows.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use compat::jaeger;
use model::TraceId;
use serde_json::{Value as Json_, json};

use crate::AppState;
use edge::access::Caller;
use edge::error::ApiError;

fn refused(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(jaeger::error(status.as_u16(), message))).into_response()
}

fn answer(data: Json_, total: usize) -> Response {
    axum::Json(jaeger::envelope(data, total)).into_response()
}

pub(crate) async fn services(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let services =
        tokio::task::spawn_blocking(move || jaeger::services(state.ctx(), &caller.visibility))
            .await
            .map_err(ApiError::internal)??;
    let total = services.len();
    Ok(answer(json!(services), total))
}

/// `/api/services/{service}/operations`: the names.
pub(crate) async fn service_operations(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(service): Path<String>,
) -> Result<Response, ApiError> {
    let operations = tokio::task::spawn_blocking(move || {
        jaeger::operations(state.ctx(), &caller.visibility, &service)
    })
    .await
    .map_err(ApiError::internal)??;
    let mut names: Vec<String> = operations.into_iter().map(|(name, _)| name).collect();
    names.dedup();
    let total = names.len();
    Ok(answer(json!(names), total))
}

/// `/api/operations?service=…&spanKind=…`: names with their span kinds.
pub(crate) async fn operations(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let get = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let Some(service) = get("service").filter(|s| !s.is_empty()) else {
        return Ok(refused(StatusCode::BAD_REQUEST, "parameter `service` is required"));
    };
    let kind = get("spanKind").filter(|k| !k.is_empty());
    let operations = tokio::task::spawn_blocking(move || {
        jaeger::operations(state.ctx(), &caller.visibility, &service)
    })
    .await
    .map_err(ApiError::internal)??;
    let listed: Vec<Json_> = operations
        .into_iter()
        .filter(|(_, k)| kind.as_deref().is_none_or(|want| want == k))
        .map(|(name, kind)| json!({"name": name, "spanKind": kind}))
        .collect();
    let total = listed.len();
    Ok(answer(json!(listed), total))
}

pub(crate) async fn search(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let now = state.ctx().clock.now_unix_nanos();
    let search = match jaeger::parse_search(&params, now) {
        Ok(search) => search,
        Err(message) => return Ok(refused(StatusCode::BAD_REQUEST, &message)),
    };
    let traces = tokio::task::spawn_blocking(move || {
        jaeger::search(state.ctx(), &caller.visibility, &search)
    })
    .await
    .map_err(ApiError::internal)??;
    let total = traces.len();
    Ok(answer(json!(traces), total))
}

/// `/api/dependencies`: the service graph's edges as Jaeger's dependency links (`endTs` and
/// `lookback` are accepted; the links are this server's since it started).
pub(crate) async fn dependencies(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let links = jaeger::dependencies(state.ctx(), &caller.visibility);
    let total = links.len();
    Ok(answer(json!(links), total))
}

pub(crate) async fn trace(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(trace_id): Path<String>,
) -> Result<Response, ApiError> {
    let Ok(id) = TraceId::from_hex(&trace_id) else {
        let message = format!("`{trace_id}` is not a trace id; expected 32 hex digits");
        return Ok(refused(StatusCode::BAD_REQUEST, &message));
    };
    let found =
        tokio::task::spawn_blocking(move || jaeger::trace(state.ctx(), &caller.visibility, &id))
            .await
            .map_err(ApiError::internal)??;
    Ok(match found {
        Some(trace) => answer(json!([trace]), 1),
        None => refused(StatusCode::NOT_FOUND, "trace not found"),
    })
}
