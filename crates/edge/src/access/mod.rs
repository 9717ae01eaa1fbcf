//! Every request's gate: who is calling ([`authenticate`]), whether they may
//! ([`auth::authorize`], the one decision), the audit record, CSRF for browser sessions,
//! rate limits, and the security headers every response carries.
//!
//! Each route in `server`'s route table names what it needs; [`guard`] runs before its handler
//! and leaves a [`Caller`] in the request's extensions for handlers that filter or redact by
//! what the caller may see. OTLP/gRPC, which is not an axum handler, calls [`check`] itself.
//!
//! Credentials, in order: `Authorization: Bearer` (an API token `sbt_…`, a token from the
//! configuration, or, with OIDC, a provider-signed ID or access token), the proxy's signed
//! assertion header (`auth.mode = "proxy"`; a bare user header is never trusted), the session
//! cookie (`auth.mode = "oidc"`). Without any, the caller is the local operator when
//! `auth.mode = "none"`, else anonymous.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use auth::{Decision, Need, Principal, RefusalKind, Visibility};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use store::NewAuditRecord;
use subtle::ConstantTimeEq;

mod authenticate;
mod settings;

use crate::error::{ApiError, ErrorCode};

pub use crate::{Guard, Guarded};
pub use authenticate::{
    Discovery, KeySource, SESSION_COOKIE, SessionPrincipal, authenticate, discovery, token_times,
};
pub use settings::{AccessSettings, AuthMode, ConfiguredToken, OidcSettings, ProxySettings};

/// Longest path and query, or outcome text, an audit record keeps.
const MAX_AUDITED_TEXT_BYTES: usize = 512;

pub const CSRF_HEADER: &str = "x-csrf-token";

/// Who is calling and what they may see, left in the request's extensions by [`guard`].
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub visibility: Visibility,
    /// A browser session's CSRF token (state-changing requests must echo it).
    pub session_csrf: Option<String>,
    /// The session's id digest (for signing out).
    pub session: Option<[u8; 32]>,
    pub client_addr: String,
    pub request_id: String,
}

impl Caller {
    /// A caller without credentials (public routes, refusals before authentication).
    fn anonymous(client_addr: &str, request_id: &str) -> Caller {
        Caller {
            principal: Principal::anonymous(),
            visibility: Visibility::everything(),
            session_csrf: None,
            session: None,
            client_addr: client_addr.to_owned(),
            request_id: request_id.to_owned(),
        }
    }

    /// An audit record of this caller doing `action` on `resource` with `outcome`.
    pub fn audit(
        &self,
        now_unix_nanos: u64,
        action: &str,
        resource: &str,
        outcome: &str,
    ) -> NewAuditRecord {
        NewAuditRecord {
            time_unix_nanos: now_unix_nanos,
            principal: self.principal.id.clone(),
            action: action.to_owned(),
            resource: audited_text(resource),
            outcome: audited_text(outcome),
            client_addr: self.client_addr.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

/// One route: its method and path as axum matches them, what it needs, and the audit action
/// (`None`: successful calls are not audited, e.g. ingest and health; refusals always are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub need: Need,
    pub audit: Option<&'static str>,
    /// Sign-in and token endpoints are rate-limited per client address.
    pub rate_limited: bool,
    /// A web page: refusals are HTML (or, for someone not signed in, a redirect to sign-in).
    pub page: bool,
}

/// The decision for `need` given the request's headers: for callers outside axum (gRPC).
pub async fn check(
    state: &Guard,
    headers: &HeaderMap,
    need: Need,
    client_addr: &str,
) -> Result<Caller, ApiError> {
    let request_id = request_id(headers);
    let caller = match authenticate(state, headers).await {
        Ok((principal, session)) => {
            decide(state, principal, session, need, client_addr, &request_id)
        }
        Err(e) => Err(e),
    };
    if let Err(e) = &caller {
        let record = Caller::anonymous(client_addr, &request_id).audit(
            state.ctx().clock.now_unix_nanos(),
            "otlp.export",
            "/v1/traces",
            &refused_outcome(e),
        );
        let records = state.refusal_records(client_addr.parse().ok(), record);
        append_audit(state, records).await?;
    }
    caller
}

fn decide(
    state: &Guard,
    principal: Principal,
    session: Option<store::StoredSession>,
    need: Need,
    client_addr: &str,
    request_id: &str,
) -> Result<Caller, ApiError> {
    let policy = &state.policy;
    match auth::authorize(&principal, need, policy) {
        Decision::Allow(visibility) => Ok(Caller {
            principal,
            visibility,
            session_csrf: session.as_ref().map(|s| s.csrf_token.clone()),
            session: session.map(|s| s.id_sha256),
            client_addr: client_addr.to_owned(),
            request_id: request_id.to_owned(),
        }),
        Decision::Deny(refusal) => Err(ApiError::new(
            match refusal.kind {
                RefusalKind::Unauthenticated => ErrorCode::Unauthenticated,
                RefusalKind::Forbidden => ErrorCode::PermissionDenied,
            },
            refusal.reason,
        )),
    }
}

/// `text` cut to what an audit record keeps, at a character boundary, saying how long it was.
fn audited_text(text: &str) -> String {
    if text.len() <= MAX_AUDITED_TEXT_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_AUDITED_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

fn refused_outcome(e: &ApiError) -> String {
    format!("refused {}: {}", e.code.http_status().as_u16(), e.message)
}

/// Appends audit records; a failure to record refuses the request (fail closed).
pub async fn append_audit(state: &Guard, records: Vec<NewAuditRecord>) -> Result<(), ApiError> {
    let accounts = state.ctx().store.accounts().clone();
    let count = records.len() as u64;
    tokio::task::spawn_blocking(move || accounts.append_audit(&records))
        .await
        .map_err(ApiError::internal)?
        .map(|_| {
            state.audit_records_total.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        })
        .map_err(|e| {
            state.audit_failures_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(error = %e, "cannot write the audit log");
            ApiError::new(
                ErrorCode::Unavailable,
                "the audit log cannot be written; nothing was done",
            )
        })
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| auth::random_string(9).unwrap_or_else(|_| "unknown".into()))
}

fn client_addr(request: &Request) -> (String, Option<IpAddr>) {
    match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => (addr.ip().to_string(), Some(addr.ip())),
        None => ("unknown".into(), None),
    }
}

/// The middleware in front of every route: rate limit, authenticate, authorize, CSRF, then
/// the handler, then the audit record (written before the response leaves).
pub async fn guard(
    State((state, spec)): State<(Arc<Guard>, RouteSpec)>,
    mut request: Request,
    next: Next,
) -> Response {
    let (client_addr, ip) = client_addr(&request);
    let request_id = request_id(request.headers());
    let resource = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.uri().path().to_owned(), |p| p.as_str().to_owned());
    let action = spec.audit.unwrap_or(spec.path);
    let now = || state.ctx().clock.now_unix_nanos();

    if spec.rate_limited
        && let Some(ip) = ip
        && !state.admit(ip, state.settings.rate_limit_per_minute)
    {
        let mut response = ApiError::new(
            ErrorCode::ResourceExhausted,
            "too many sign-in or token requests from this address; retry in a minute",
        )
        .into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(60));
        return finish(response, &request_id);
    }

    let (who, caller) = if spec.need == Need::Public {
        ("anonymous".to_owned(), Ok(Caller::anonymous(&client_addr, &request_id)))
    } else {
        match authenticate(&state, request.headers()).await {
            Ok((principal, session)) => (
                principal.id.clone(),
                decide(&state, principal, session, spec.need, &client_addr, &request_id),
            ),
            Err(e) => ("anonymous (invalid credentials)".to_owned(), Err(e)),
        }
    };
    let caller = caller.and_then(|caller| check_csrf(caller, &request, spec.need, &state));
    let caller = match caller {
        Ok(caller) => caller,
        Err(error) => {
            let record = NewAuditRecord {
                time_unix_nanos: now(),
                principal: who,
                action: action.to_owned(),
                resource: audited_text(&resource),
                outcome: audited_text(&refused_outcome(&error)),
                client_addr,
                request_id: request_id.clone(),
            };
            let records = state.refusal_records(ip, record);
            let response = match append_audit(&state, records).await {
                // OTLP clients get OTLP's error shape.
                Ok(()) if spec.need == Need::Ingest => {
                    crate::error::refusal(&error, request.headers())
                }
                // People get a page: to sign in when they could, or what went wrong.
                Ok(()) if spec.page => {
                    let can_sign_in = matches!(state.settings.mode, AuthMode::Oidc(_));
                    if error.code == ErrorCode::Unauthenticated && can_sign_in {
                        sign_in_redirect(&resource)
                    } else {
                        crate::error::page(error.code.http_status(), &error.message)
                    }
                }
                Ok(()) => error.into_response(),
                Err(audit_error) => audit_error.into_response(),
            };
            return finish(response, &request_id);
        }
    };

    request.extensions_mut().insert(caller.clone());
    let response = next.run(request).await;
    let status = response.status();
    let refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
    if spec.audit.is_some() || refused {
        let verdict = if refused {
            "refused"
        } else if status.is_success() || status.is_redirection() {
            "ok"
        } else {
            "failed"
        };
        let outcome = format!("{verdict} {}", status.as_u16());
        if let Err(audit_error) =
            append_audit(&state, vec![caller.audit(now(), action, &resource, &outcome)]).await
        {
            return finish(audit_error.into_response(), &request_id);
        }
    }
    finish(response, &request_id)
}

/// Refuses a state-changing request a browser may have been tricked into sending: a session
/// must echo its CSRF token; any other caller a browser can send for (a proxy assertion the
/// proxy adds, the local operator of an open server, anyone through an open door) must come
/// from this site (`Sec-Fetch-Site`, else `Origin`); and the API takes only JSON bodies, which
/// a cross-site form cannot send. Bearer tokens, which browsers never attach on their own,
/// OTLP (browser SDKs export cross-origin) and forge webhooks (signed) are exempt.
fn check_csrf(
    caller: Caller,
    request: &Request,
    need: Need,
    state: &Guard,
) -> Result<Caller, ApiError> {
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !changes_state || matches!(need, Need::Ingest | Need::ForgeSignature) {
        return Ok(caller);
    }
    let headers = request.headers();
    if request.uri().path().starts_with("/api/")
        && let Some(content_type) = headers.get(header::CONTENT_TYPE)
        && !content_type
            .to_str()
            .is_ok_and(|c| c.trim().to_ascii_lowercase().starts_with("application/json"))
    {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "the API takes JSON bodies: send `Content-Type: application/json`",
        ));
    }
    if let Some(expected) = &caller.session_csrf {
        let offered = headers.get(CSRF_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
        return if bool::from(offered.ct_eq(expected.as_bytes())) {
            Ok(caller)
        } else {
            Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "a browser session must send its CSRF token in `{CSRF_HEADER}` (from `GET /auth/me`) on requests that change anything"
                ),
            ))
        };
    }
    if caller.principal.kind == auth::PrincipalKind::Token || !cross_site(headers, state) {
        return Ok(caller);
    }
    Err(ApiError::new(
        ErrorCode::PermissionDenied,
        "a request that changes anything must come from spanblame's own pages (this one came from another site); scripts send a bearer token",
    ))
}

/// Whether a browser says the request comes from another site.
fn cross_site(headers: &HeaderMap, state: &Guard) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = text("origin") else { return false };
    let host = |url: &str| {
        url.split("://").nth(1).map(|rest| rest.trim_end_matches('/').to_ascii_lowercase())
    };
    let Some(origin_host) = host(origin) else { return true };
    let own_host = text("host").map(str::to_ascii_lowercase);
    let public_host = state.public_url().and_then(host);
    own_host.as_deref() != Some(origin_host.as_str())
        && public_host.as_deref() != Some(origin_host.as_str())
}

fn finish(mut response: Response, request_id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Security headers on every response of the main address.
pub async fn security_headers(
    State(state): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        ("cross-origin-opener-policy", "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if state.ctx().configured_url.as_deref().is_some_and(|u| u.starts_with("https://")) {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}

/// Where a refused page request goes to sign in, coming back to `return_to` afterwards.
fn sign_in_redirect(return_to: &str) -> Response {
    let location = format!("/auth/login?return_to={}", shapes::query_escape(return_to));
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
