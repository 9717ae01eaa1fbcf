//! The web pages' handlers: each runs its `web` page off the async threads with the guard's
//! caller as the viewer, and sends the HTML (or an HTML error page); plus the stylesheet and
//! script.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use web::{Page, PageError, Viewer};

use crate::AppState;
use edge::access::Caller;
use edge::error::ApiError;

type PageState = State<Arc<AppState>>;
type PageCaller = Extension<Caller>;
type PageParams = Query<Vec<(String, String)>>;
type PagePath = Path<String>;

pub(crate) async fn home(State(state): PageState, Extension(caller): PageCaller) -> Response {
    show(state, caller, web::home).await
}

pub(crate) async fn findings_page(
    State(state): PageState,
    Extension(caller): PageCaller,
    Query(params): PageParams,
) -> Response {
    show(state, caller, move |ctx, viewer| web::findings_page(ctx, viewer, params)).await
}

pub(crate) async fn finding_page(
    State(state): PageState,
    Extension(caller): PageCaller,
    Path(id): PagePath,
) -> Response {
    let window = state.settings.detection.before_window_minutes;
    show(state, caller, move |ctx, viewer| web::finding_page(ctx, viewer, id, window)).await
}

pub(crate) async fn incident_page(
    State(state): PageState,
    Extension(caller): PageCaller,
    Path(id): PagePath,
) -> Response {
    show(state, caller, move |ctx, viewer| web::incident_page(ctx, viewer, id)).await
}

pub(crate) async fn trace_page(
    State(state): PageState,
    Extension(caller): PageCaller,
    Path(id): PagePath,
) -> Response {
    show(state, caller, move |ctx, viewer| web::trace_page(ctx, viewer, id)).await
}

pub(crate) async fn compare_page(
    State(state): PageState,
    Extension(caller): PageCaller,
    Query(params): PageParams,
) -> Response {
    show(state, caller, move |ctx, viewer| web::compare_page(ctx, viewer, params)).await
}

pub(crate) async fn search_page(
    State(state): PageState,
    Extension(caller): PageCaller,
    Query(params): PageParams,
) -> Response {
    show(state, caller, move |ctx, viewer| web::search_page(ctx, viewer, params)).await
}

pub(crate) async fn service_page(
    State(state): PageState,
    Extension(caller): PageCaller,
    Path(name): PagePath,
    Query(params): PageParams,
) -> Response {
    show(state, caller, move |ctx, viewer| web::service_page(ctx, viewer, name, params)).await
}

pub(crate) async fn deploys_page(
    State(state): PageState,
    Extension(caller): PageCaller,
    Query(params): PageParams,
) -> Response {
    show(state, caller, move |ctx, viewer| web::deploys_page(ctx, viewer, params)).await
}

pub(crate) async fn deploy_page(
    State(state): PageState,
    Extension(caller): PageCaller,
    Path(id): PagePath,
) -> Response {
    show(state, caller, move |ctx, viewer| web::deploy_page(ctx, viewer, id)).await
}

pub(crate) async fn commit_page(
    State(state): PageState,
    Extension(caller): PageCaller,
    Path(sha): PagePath,
) -> Response {
    show(state, caller, move |ctx, viewer| web::commit_page(ctx, viewer, sha)).await
}

pub(crate) async fn dora_page(
    State(state): PageState,
    Extension(caller): PageCaller,
    Query(params): PageParams,
) -> Response {
    show(state, caller, move |ctx, viewer| web::dora_page(ctx, viewer, params)).await
}

pub(crate) async fn graph_page(State(state): PageState, Extension(caller): PageCaller) -> Response {
    show(state, caller, web::graph_page).await
}

pub(crate) async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", web::STYLESHEET)
}

pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", web::SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    // Assets change only with the binary; an hour of caching is plenty.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}

/// Renders a page on a blocking thread (pages read the store) and sends it.
async fn show(
    state: Arc<AppState>,
    caller: Caller,
    page: impl FnOnce(&web::Context, &Viewer) -> Result<Page, PageError> + Send + 'static,
) -> Response {
    let who = match caller.principal.kind {
        auth::PrincipalKind::Anonymous | auth::PrincipalKind::Local => None,
        _ => Some(caller.principal.id.clone()),
    };
    let viewer = Viewer { visibility: caller.visibility, who, csrf: caller.session_csrf };
    let rendered = tokio::task::spawn_blocking(move || page(state.ctx(), &viewer)).await;
    let error = match rendered {
        Ok(Ok(page)) => {
            let status = StatusCode::from_u16(page.status).unwrap_or(StatusCode::OK);
            return (status, Html(page.html)).into_response();
        }
        Ok(Err(PageError::NotFound(message))) => {
            ApiError::new(edge::error::ErrorCode::NotFound, message)
        }
        Ok(Err(PageError::BadRequest(message))) => ApiError::invalid(message),
        Ok(Err(PageError::Store(e))) => ApiError::from(e),
        Ok(Err(PageError::Render(message))) => ApiError::internal(message),
        Err(e) => ApiError::internal(e),
    };
    edge::error::page(error.code.http_status(), &error.message)
}
