//! Health (`/healthz`, `/readyz`), `/metrics`, and the answers for unknown routes and methods.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json_, json};

use crate::AppState;
use edge::error::{ApiError, ErrorCode};

pub(crate) async fn healthz() -> Json<Json_> {
    Json(json!({"status": "ok"}))
}

pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.ctx().store.is_healthy() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        ApiError::new(
            ErrorCode::Unavailable,
            "a storage engine is unreachable or the span store stopped accepting writes; see the log",
        )
        .into_response()
    }
}

/// `/metrics/spans`: span metrics and the service graph under Tempo's metric names, the
/// series of the services the caller may see; 404 with how to enable them when off.
pub(crate) async fn span_metrics(
    State(state): State<Arc<AppState>>,
    axum::Extension(caller): axum::Extension<edge::access::Caller>,
) -> Response {
    let Some(metrics) = &state.ctx().span_metrics else {
        return ApiError::new(
            ErrorCode::NotFound,
            "span metrics are off; enable them with `[span_metrics] enabled = true` (or SPANBLAME_SPAN_METRICS_ENABLED=true)",
        )
        .into_response();
    };
    let text = metrics
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .render(|service| caller.visibility.allows_service(service));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let in_flight =
        (state.settings.max_exports_in_flight - state.write_slots.available_permits()) as u64;
    // The outbox is in the metadata store; a scrape while it is unreachable shows the rest.
    let store = Arc::clone(&state.ctx().store);
    let outbox = tokio::task::spawn_blocking(move || store.delivery_counts())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let scrape = edge::metrics::Scrape {
        stats: &state.ctx().store.stats(),
        exports_in_flight: in_flight,
        outbox: &outbox,
        guard: &state.guard,
    };
    let body = edge::metrics::render(&state.metrics, &scrape);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route; see the README for the API")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "this route does not accept that method")
}
