//! The web UI: server-rendered pages (askama templates in `crates/web/templates`, compiled
//! into the binary) over the same views as the JSON API, so a page shows exactly what the API
//! would show the same caller. Charts are SVG drawn here (`chart`); the only script is
//! `assets/app.js` (copy buttons, finding status), served by the server like the CSS.
//!
//! Each page is a plain function of the views' [`Context`], the [`Viewer`] and the request's
//! path or query, returning the page's HTML and status; the server runs it off the async
//! threads and sends it. Latency and error numbers on the home and service pages come from
//! the per-minute sketches (`views::sketches`), never from a scan of raw spans.
//!
//! May depend on: `views` (and through it the store's query and error types), `analysis` (to
//! merge sketches), `model`, `auth`'s `Visibility`, askama.
//! **Never:** open the store or a mirror (only views do), know HTTP, or write anything.

mod chart;
mod pages;

use askama::Template;
pub use views::Context;
use views::Visibility;

pub use pages::{
    commit_page, compare_page, deploy_page, deploys_page, dora_page, finding_page, findings_page,
    graph_page, home, incident_page, search_page, service_page, trace_page,
};

/// The stylesheet every page links, served at `/assets/app.css`.
pub const STYLESHEET: &str = include_str!("../assets/app.css");
/// The pages' one script, served at `/assets/app.js`.
pub const SCRIPT: &str = include_str!("../assets/app.js");

/// Who is looking: what they may see, and what the page header says about them.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub visibility: Visibility,
    /// The signed-in person or token, when there is one.
    pub who: Option<String>,
    /// A browser session's CSRF token, for the script's state-changing requests.
    pub csrf: Option<String>,
}

/// A rendered page and its HTTP status.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub html: String,
}

/// What every page shows around its content.
pub(crate) struct Layout {
    pub(crate) title: String,
    /// Which navigation entry is current.
    pub(crate) section: &'static str,
    pub(crate) who: Option<String>,
    pub(crate) csrf: Option<String>,
}

impl Layout {
    pub(crate) fn new(viewer: &Viewer, section: &'static str, title: impl Into<String>) -> Layout {
        Layout { title: title.into(), section, who: viewer.who.clone(), csrf: viewer.csrf.clone() }
    }

    pub(crate) fn is(&self, section: &str) -> bool {
        self.section == section
    }
}

/// A page that could not be shown.
#[derive(Debug)]
pub enum PageError {
    /// 404, with what was looked for.
    NotFound(String),
    /// 400, with what is wrong in the request and how to fix it.
    BadRequest(String),
    /// The store could not answer; the server maps it as it maps the API's store errors.
    Store(views::StoreError),
    /// A template failed to render (a bug).
    Render(String),
}

impl PageError {
    pub(crate) fn not_found(message: impl Into<String>) -> PageError {
        PageError::NotFound(message.into())
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> PageError {
        PageError::BadRequest(message.into())
    }
}

impl From<views::StoreError> for PageError {
    fn from(e: views::StoreError) -> PageError {
        PageError::Store(e)
    }
}

impl From<views::Invalid> for PageError {
    fn from(e: views::Invalid) -> PageError {
        PageError::BadRequest(e.message)
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

/// An HTML error page: the status, its reason phrase, and what went wrong (also for
/// refusals on page routes, from the server's access guard). `None` if it cannot render.
pub fn error_page(status: u16, reason: &str, message: &str) -> Option<String> {
    let layout = Layout { title: format!("{status} {reason}"), section: "", who: None, csrf: None };
    let page = ErrorPage { layout, status, reason: reason.to_owned(), message: message.to_owned() };
    page.render().ok()
}

/// Renders a page with 200.
fn render(page: &impl Template) -> Result<Page, PageError> {
    let html = page
        .render()
        .map_err(|e| PageError::Render(format!("the page could not be rendered: {e}")))?;
    Ok(Page { status: 200, html })
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
