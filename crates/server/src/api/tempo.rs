//! Grafana Tempo's query API on the main port, for Grafana's Tempo data source: `/api/echo`,
//! a trace by id (`/api/traces/{id}`, `/api/v2/traces/{id}`; OTLP JSON, or protobuf on
//! `Accept: application/protobuf`), `/api/search`, and tag names and values. Each calls
//! `compat::tempo` within the caller's reach; access and audit are the guard's, as for v1.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use compat::tempo;
use model::TraceId;
use serde_json::{Value as Json_, json};

use crate::AppState;
use edge::access::Caller;
use edge::error::{ApiError, ErrorCode};

pub(crate) async fn echo() -> &'static str {
    "echo"
}

/// `/api/traces/{id}`: `{"batches": [ResourceSpans…]}`, as Tempo's v1 answers.
pub(crate) async fn trace_v1(
    state: State<Arc<AppState>>,
    caller: Extension<Caller>,
    headers: HeaderMap,
    id: Path<String>,
    params: Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    trace(state, caller, headers, id, params, false).await
}

/// `/api/v2/traces/{id}`: `{"trace": {"resourceSpans": […]}}`.
pub(crate) async fn trace_v2(
    state: State<Arc<AppState>>,
    caller: Extension<Caller>,
    headers: HeaderMap,
    id: Path<String>,
    params: Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    trace(state, caller, headers, id, params, true).await
}

async fn trace(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(trace_id): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    v2: bool,
) -> Result<Response, ApiError> {
    let id = TraceId::from_hex(&trace_id).map_err(|e| {
        ApiError::invalid(format!("`{trace_id}` is not a trace id ({e}); expected 32 hex digits"))
    })?;
    // `start` and `end` narrow where Tempo looks; spanblame finds a trace by id anywhere,
    // but still refuses malformed values rather than ignoring them.
    for (key, value) in &params {
        if key == "start" || key == "end" {
            compat::unix_seconds(key, value).map_err(ApiError::invalid)?;
        }
    }
    let data =
        tokio::task::spawn_blocking(move || tempo::trace(state.ctx(), &caller.visibility, &id))
            .await
            .map_err(ApiError::internal)??;
    let Some(data) = data else {
        return Err(ApiError::new(ErrorCode::NotFound, format!("trace `{trace_id}` not found")));
    };
    let protobuf = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/protobuf"));
    if protobuf {
        let body = if v2 {
            otlp::encode_protobuf_in_field_one(&data)
        } else {
            otlp::encode_protobuf(&data)
        };
        return Ok(([(header::CONTENT_TYPE, "application/protobuf")], body).into_response());
    }
    let resource_spans = otlp::encode_json(&data)["resourceSpans"].take();
    let body = if v2 {
        json!({"trace": {"resourceSpans": resource_spans}})
    } else {
        json!({"batches": resource_spans})
    };
    Ok(Json(body).into_response())
}

pub(crate) async fn search(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<tempo::SearchResponse>, ApiError> {
    let now = state.ctx().clock.now_unix_nanos();
    let search = tempo::parse_search(&params, now)?;
    let found = tokio::task::spawn_blocking(move || {
        tempo::search(state.ctx(), &caller.visibility, &search)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(found))
}

/// The window tag lookups sample: `start`/`end` in Unix seconds, else the last day.
fn window(params: &[(String, String)], now_unix_nanos: u64) -> Result<(u64, u64), ApiError> {
    let (mut start, mut end) = (None, None);
    for (key, value) in params {
        match key.as_str() {
            "start" => start = Some(compat::unix_seconds(key, value).map_err(ApiError::invalid)?),
            "end" => end = Some(compat::unix_seconds(key, value).map_err(ApiError::invalid)?),
            _ => {}
        }
    }
    let end = end.map_or(now_unix_nanos, |e| e.saturating_add(1_000_000_000));
    Ok((start.unwrap_or_else(|| end.saturating_sub(24 * 3600 * 1_000_000_000)), end))
}

fn param<'p>(params: &'p [(String, String)], key: &str) -> Option<&'p str> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `/api/search/tags` (`{"tagNames": […]}`) and `/api/v2/search/tags` (`{"scopes": […]}`,
/// narrowed by `scope`).
pub(crate) async fn tags(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<Vec<(String, String)>>,
    v2: bool,
) -> Result<Json<Json_>, ApiError> {
    let (start, end) = window(&params, state.ctx().clock.now_unix_nanos())?;
    let scope = param(&params, "scope").filter(|s| !s.is_empty() && *s != "all").map(str::to_owned);
    if let Some(scope) = &scope
        && !["span", "resource", "intrinsic"].contains(&scope.as_str())
    {
        return Err(ApiError::invalid(format!(
            "`scope` must be span, resource, intrinsic or all; got `{scope}`"
        )));
    }
    let names = tokio::task::spawn_blocking(move || {
        tempo::tag_names(state.ctx(), &caller.visibility, start, end)
    })
    .await
    .map_err(ApiError::internal)??;
    if !v2 {
        let all: std::collections::BTreeSet<&String> =
            names.iter().filter(|(s, _)| **s != "intrinsic").flat_map(|(_, n)| n).collect();
        return Ok(Json(json!({ "tagNames": all })));
    }
    let scopes: Vec<Json_> = names
        .iter()
        .filter(|(name, _)| scope.as_deref().is_none_or(|s| s == **name))
        .map(|(name, tags)| json!({"name": name, "tags": tags}))
        .collect();
    Ok(Json(json!({ "scopes": scopes })))
}

pub(crate) async fn tags_v1(
    state: State<Arc<AppState>>,
    caller: Extension<Caller>,
    params: Query<Vec<(String, String)>>,
) -> Result<Json<Json_>, ApiError> {
    tags(state, caller, params, false).await
}

pub(crate) async fn tags_v2(
    state: State<Arc<AppState>>,
    caller: Extension<Caller>,
    params: Query<Vec<(String, String)>>,
) -> Result<Json<Json_>, ApiError> {
    tags(state, caller, params, true).await
}

/// `/api/search/tag/{tag}/values` (`{"tagValues": ["…"]}`) and the v2 form with typed values
/// (`{"tagValues": [{"type": "string", "value": "…"}]}`), narrowed by `q` (TraceQL).
async fn tag_values(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(tag): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    v2: bool,
) -> Result<Json<Json_>, ApiError> {
    let (start, end) = window(&params, state.ctx().clock.now_unix_nanos())?;
    let q = param(&params, "q").map(str::to_owned);
    let values = tokio::task::spawn_blocking(move || {
        tempo::tag_values(state.ctx(), &caller.visibility, &tag, q.as_deref(), start, end)
    })
    .await
    .map_err(ApiError::internal)??;
    let listed: Vec<Json_> = if v2 {
        values.iter().map(tempo::typed_value).collect()
    } else {
        values.iter().map(|v| Json_::String(tempo::value_text(v))).collect()
    };
    Ok(Json(json!({ "tagValues": listed })))
}

pub(crate) async fn tag_values_v1(
    state: State<Arc<AppState>>,
    caller: Extension<Caller>,
    tag: Path<String>,
    params: Query<Vec<(String, String)>>,
) -> Result<Json<Json_>, ApiError> {
    tag_values(state, caller, tag, params, false).await
}

pub(crate) async fn tag_values_v2(
    state: State<Arc<AppState>>,
    caller: Extension<Caller>,
    tag: Path<String>,
    params: Query<Vec<(String, String)>>,
) -> Result<Json<Json_>, ApiError> {
    tag_values(state, caller, tag, params, true).await
}
