//! The web UI: server-rendered pages (askama templates in `crates/server/templates`, compiled
//! into the binary) over the same view functions as the JSON API, so a page shows exactly
//! what the API would show the same caller. Charts are SVG drawn here; the only script is
//! `assets/app.js` (copy buttons, finding status), served from this binary like the CSS.
//!
//! Latency and error numbers on the home and service pages come from the per-minute sketches,
//! never from a scan of raw spans.

mod chart;
pub(crate) mod views;

use std::sync::Arc;

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use store::StoreError;

use crate::AppState;
use crate::access::Caller;
use crate::error::ApiError;

pub(crate) use views::{
    commit_page, deploy_page, deploys_page, dora_page, finding_page, findings_page, home,
    search_page, service_page, trace_page,
};

const STYLESHEET: &str = include_str!("../../assets/app.css");
const SCRIPT: &str = include_str!("../../assets/app.js");

pub(crate) async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", STYLESHEET)
}

pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    // Assets change only with the binary; an hour of caching is plenty.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}

/// What every page shows around its content.
pub(crate) struct Layout {
    pub(crate) title: String,
    /// Which navigation entry is current.
    pub(crate) section: &'static str,
    /// The signed-in person or token, when there is one.
    pub(crate) who: Option<String>,
    /// A browser session's CSRF token, for the script's state-changing requests.
    pub(crate) csrf: Option<String>,
}

impl Layout {
    pub(crate) fn new(caller: &Caller, section: &'static str, title: impl Into<String>) -> Layout {
        let who = match caller.principal.kind {
            auth::PrincipalKind::Anonymous | auth::PrincipalKind::Local => None,
            _ => Some(caller.principal.id.clone()),
        };
        Layout { title: title.into(), section, who, csrf: caller.session_csrf.clone() }
    }

    pub(crate) fn is(&self, section: &str) -> bool {
        self.section == section
    }
}

/// A page that could not be shown: rendered as HTML with the status and what to do.
#[derive(Debug)]
pub(crate) struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    pub(crate) fn not_found(message: impl Into<String>) -> PageError {
        PageError { status: StatusCode::NOT_FOUND, message: message.into() }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> PageError {
        PageError { status: StatusCode::BAD_REQUEST, message: message.into() }
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError { status: e.code.http_status(), message: e.message }
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> PageError {
        PageError::from(ApiError::from(e))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    status: u16,
    reason: String,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        error_page(self.status, &self.message)
    }
}

/// An HTML error page (also for refusals on page routes, from the access guard).
pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error").to_owned();
    let layout = Layout {
        title: format!("{} {reason}", status.as_u16()),
        section: "",
        who: None,
        csrf: None,
    };
    let page = ErrorPage { layout, status: status.as_u16(), reason, message: message.to_owned() };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, message.to_owned()).into_response(),
    }
}

/// Renders a page with 200.
fn render(page: &impl Template) -> Result<Response, PageError> {
    let html = page.render().map_err(|e| PageError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("the page could not be rendered: {e}"),
    })?;
    Ok(Html(html).into_response())
}

/// Runs blocking store work for a page off the async threads.
async fn blocking<T: Send + 'static>(
    state: Arc<AppState>,
    caller: Caller,
    work: impl FnOnce(&AppState, &Caller) -> Result<T, PageError> + Send + 'static,
) -> Result<T, PageError> {
    tokio::task::spawn_blocking(move || work(&state, &caller))
        .await
        .map_err(|e| PageError::from(ApiError::internal(e)))?
}

/// `text` with `&`, `<`, `>`, `"` and `'` escaped, for markup built outside templates.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A query-string or path component, percent-encoded (RFC 3986 unreserved characters stay).
pub(crate) fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The path-and-query a refused page request should come back to after signing in.
pub(crate) fn sign_in_redirect(return_to: &str) -> Response {
    let location = format!("/auth/login?return_to={}", query_escape(return_to));
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Shared extractor types for the page handlers.
pub(crate) type PageState = State<Arc<AppState>>;
pub(crate) type PageCaller = Extension<Caller>;
pub(crate) type PageParams = Query<Vec<(String, String)>>;
pub(crate) type PagePath = Path<String>;
