//! Browser sign-in with OpenID Connect: authorization code flow with PKCE (S256), `state`
//! and `nonce`, the ID token verified against the provider's keys, a server-side session
//! behind an `HttpOnly`, `SameSite=Lax` (and `Secure`) cookie; sign-out ends the session
//! here and, when the provider offers it, there (RP-initiated logout).
//!
//! Routes: `GET /auth/login` → the provider → `GET /auth/callback` → the page asked for;
//! `GET /auth/me` (who am I, and the CSRF token for state-changing requests);
//! `POST /auth/logout`.

use std::sync::Arc;

use auth::jwt::Expectations;
use auth::{IdentityMapping, PrincipalKind};
use axum::Extension;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use store::{PendingSignIn, StoredSession};

use crate::access::{AuthMode, Caller, SESSION_COOKIE, SessionPrincipal, discovery};
use crate::access::{Guard, Guarded};
use crate::error::{ApiError, ErrorCode};

/// How long a sign-in may take between leaving for the provider and coming back.
const SIGN_IN_MAX_AGE_NANOS: u64 = 10 * 60 * 1_000_000_000;

#[derive(Debug, Deserialize)]
pub struct LoginParams {
    /// Where to go after signing in: a path on this server.
    return_to: Option<String>,
    /// Passed to the provider (a known account name or email).
    login_hint: Option<String>,
}

fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The URL the provider sends people back to: `{public_url}/auth/callback`.
fn callback_url(state: &Guard) -> Result<String, ApiError> {
    let base = state.public_url().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "set `server.public_url` so sign-in knows its callback URL",
        )
    })?;
    Ok(format!("{}/auth/callback", base.trim_end_matches('/')))
}

pub async fn login<S: Guarded>(
    State(app): State<Arc<S>>,
    Query(params): Query<LoginParams>,
) -> Result<Response, ApiError> {
    let state = app.guard();
    let discovery = discovery(state).await?;
    let AuthMode::Oidc(oidc) = &state.settings.mode else {
        unreachable!("INVARIANT: discovery succeeds only in OIDC mode")
    };
    // Only a path on this server: never an open redirect.
    let return_to = params
        .return_to
        .filter(|p| p.starts_with('/') && !p.starts_with("//") && !p.contains('\\'))
        .unwrap_or_else(|| "/".into());
    let random = |bytes| auth::random_string(bytes).map_err(ApiError::internal);
    let (sign_in_state, nonce, verifier) = (random(32)?, random(32)?, random(48)?);
    let pending = PendingSignIn {
        state_sha256: Sha256::digest(sign_in_state.as_bytes()).into(),
        nonce: nonce.clone(),
        code_verifier: verifier.clone(),
        return_to,
        expires_unix_nanos: state.ctx().clock.now_unix_nanos() + SIGN_IN_MAX_AGE_NANOS,
    };
    let accounts = state.ctx().store.accounts().clone();
    tokio::task::spawn_blocking(move || accounts.insert_sign_in(&pending))
        .await
        .map_err(ApiError::internal)??;
    let mut scopes = vec!["openid".to_owned()];
    scopes.extend(oidc.scopes.iter().filter(|s| *s != "openid").cloned());
    let mut query = vec![
        ("response_type", "code".to_owned()),
        ("client_id", oidc.client_id.clone()),
        ("redirect_uri", callback_url(state)?),
        ("scope", scopes.join(" ")),
        ("state", sign_in_state),
        ("nonce", nonce),
        ("code_challenge", auth::pkce_challenge(&verifier)),
        ("code_challenge_method", "S256".to_owned()),
    ];
    if let Some(hint) = params.login_hint {
        query.push(("login_hint", hint));
    }
    let url = reqwest::Url::parse_with_params(&discovery.authorization_endpoint, &query).map_err(
        |e| {
            ApiError::new(
                ErrorCode::Unavailable,
                format!("the provider's authorization endpoint is not a URL: {e}"),
            )
        },
    )?;
    Ok(redirect(url.as_str()))
}

#[derive(Debug, Deserialize)]
pub struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
}

fn refused(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, message)
}

/// The provider's redirect back: checks `state`, redeems the code with the PKCE verifier,
/// verifies the ID token and its `nonce`, and opens a session. Every outcome is audited.
pub async fn callback<S: Guarded>(
    State(app): State<Arc<S>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<CallbackParams>,
) -> Response {
    let state = app.guard();
    let outcome = finish_sign_in(state, params).await;
    let now = state.ctx().clock.now_unix_nanos();
    let (who, result) = match outcome {
        Ok((who, response)) => (who, Ok(response)),
        Err((who, error)) => (who, Err(error)),
    };
    let outcome = match &result {
        Ok(_) => "ok: session opened".to_owned(),
        Err(e) => format!("refused {}: {}", e.code.http_status().as_u16(), e.message),
    };
    let mut record = caller.audit(now, "auth.sign_in", "/auth/callback", &outcome);
    record.principal = who;
    if let Err(e) = crate::access::append_audit(state, vec![record]).await {
        return e.into_response();
    }
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn finish_sign_in(
    state: &Guard,
    params: CallbackParams,
) -> Result<(String, Response), (String, ApiError)> {
    let unknown = |e: ApiError| ("anonymous".to_owned(), e);
    if let Some(error) = params.error {
        return Err(unknown(refused(format!(
            "the identity provider refused the sign-in: {error}{}",
            params.error_description.map(|d| format!(" ({d})")).unwrap_or_default()
        ))));
    }
    let (Some(code), Some(sign_in_state)) = (params.code, params.state) else {
        return Err(unknown(ApiError::invalid(
            "the callback needs `code` and `state`; start again at /auth/login",
        )));
    };
    let digest: [u8; 32] = Sha256::digest(sign_in_state.as_bytes()).into();
    let accounts = state.ctx().store.accounts().clone();
    let now = state.ctx().clock.now_unix_nanos();
    let pending = tokio::task::spawn_blocking(move || accounts.take_sign_in(&digest, now))
        .await
        .map_err(|e| unknown(ApiError::internal(e)))?
        .map_err(|e| unknown(e.into()))?
        .ok_or_else(|| unknown(refused("unknown or expired sign-in `state` (each is good once, for 10 minutes); start again at /auth/login")))?;

    let discovery = discovery(state).await.map_err(unknown)?;
    let AuthMode::Oidc(oidc) = &state.settings.mode else {
        unreachable!("INVARIANT: discovery succeeds only in OIDC mode")
    };
    let client = state.jobs.http.as_ref().map_err(|e| unknown(ApiError::internal(e)))?;
    let redirect_uri = callback_url(state).map_err(unknown)?;
    let answer = client
        .post(&discovery.token_endpoint)
        .basic_auth(&oidc.client_id, Some(&oidc.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", &pending.code_verifier),
        ])
        .send()
        .await
        .map_err(|e| {
            unknown(ApiError::new(
                ErrorCode::Unavailable,
                format!("cannot reach the provider's token endpoint: {e}"),
            ))
        })?;
    let status = answer.status();
    let body = jobs::outbound::read_capped(answer, 256 * 1024).await.map_err(|e| {
        unknown(ApiError::new(ErrorCode::Unavailable, format!("reading the token answer: {e}")))
    })?;
    if !status.is_success() {
        let reason: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        return Err(unknown(refused(format!(
            "the provider did not redeem the code ({status}: {})",
            reason
                .get("error_description")
                .or(reason.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("no reason given")
        ))));
    }
    let id_token = serde_json::from_slice::<TokenAnswer>(&body)
        .ok()
        .and_then(|a| a.id_token)
        .ok_or_else(|| unknown(refused("the provider's token answer has no `id_token`; is `openid` among the client's scopes?")))?;
    let keys = state.oidc_keys.as_ref().expect("INVARIANT: OIDC mode has a key source");
    let expect = Expectations {
        issuer: oidc.issuer.clone(),
        audiences: vec![oidc.client_id.clone()],
        leeway_secs: state.settings.leeway_secs,
    };
    let claims = keys.verify(state, &id_token, &expect).await.map_err(unknown)?;
    let who = IdentityMapping::person_id(&claims);
    if claims.string("nonce") != Some(pending.nonce.as_str()) {
        return Err((
            who,
            refused("the ID token's `nonce` does not match this sign-in (a replayed token?)"),
        ));
    }
    let groups = state.settings.identity.groups(&claims);
    let session_id = auth::random_string(32).map_err(|e| (who.clone(), ApiError::internal(e)))?;
    let csrf_token = auth::random_string(32).map_err(|e| (who.clone(), ApiError::internal(e)))?;
    let max_age_nanos = state.settings.session_max_age_nanos;
    let session = StoredSession {
        id_sha256: Sha256::digest(session_id.as_bytes()).into(),
        principal: serde_json::to_string(&SessionPrincipal { id: who.clone(), groups })
            .expect("INVARIANT: strings serialize"),
        csrf_token,
        id_token,
        created_unix_nanos: now,
        expires_unix_nanos: now + max_age_nanos,
    };
    let accounts = state.ctx().store.accounts().clone();
    tokio::task::spawn_blocking(move || accounts.insert_session(&session))
        .await
        .map_err(|e| (who.clone(), ApiError::internal(e)))?
        .map_err(|e| (who.clone(), e.into()))?;
    let mut response = redirect(&pending.return_to);
    let cookie = format!(
        "{SESSION_COOKIE}={session_id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        max_age_nanos / 1_000_000_000,
        if state.settings.secure_cookies { "; Secure" } else { "" }
    );
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("INVARIANT: base64url is a valid header"),
    );
    Ok((who, response))
}

/// Who the caller is, what they may see, and (for a browser session) the CSRF token.
pub async fn me<S: Guarded>(
    State(app): State<Arc<S>>,
    Extension(caller): Extension<Caller>,
) -> Json<Value> {
    let state = app.guard();
    let p = &caller.principal;
    // What the caller's data reads show (`null`: everything; a list: only those).
    let reach = match auth::authorize(p, auth::Need::ReadData, &state.policy) {
        auth::Decision::Allow(visibility) => visibility,
        auth::Decision::Deny(_) => auth::Visibility {
            services: Some(Default::default()),
            environments: Some(Default::default()),
        },
    };
    let kind = match p.kind {
        PrincipalKind::Person => "person",
        PrincipalKind::Token => "token",
        PrincipalKind::Local => "local",
        PrincipalKind::Anonymous => "anonymous",
    };
    Json(json!({
        "id": p.id,
        "kind": kind,
        "roles": p.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "teams": p.teams,
        "scopes": p.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "services": reach.services,
        "environments": reach.environments,
        "csrf_token": caller.session_csrf,
    }))
}

/// Ends the session (and at the provider, when it offers RP-initiated logout).
pub async fn logout<S: Guarded>(
    State(app): State<Arc<S>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let state = app.guard();
    let mut to = "/".to_owned();
    if let Some(digest) = caller.session {
        let accounts = state.ctx().store.accounts().clone();
        let now = state.ctx().clock.now_unix_nanos();
        let session = {
            let accounts = accounts.clone();
            tokio::task::spawn_blocking(move || accounts.session(&digest, now))
                .await
                .map_err(ApiError::internal)??
        };
        tokio::task::spawn_blocking(move || accounts.delete_session(&digest))
            .await
            .map_err(ApiError::internal)??;
        if let (Some(session), Ok(discovery)) = (session, discovery(state).await)
            && let Some(end) = discovery.end_session_endpoint
        {
            let mut query = vec![("id_token_hint", session.id_token)];
            if let Some(base) = state.public_url() {
                query
                    .push(("post_logout_redirect_uri", format!("{}/", base.trim_end_matches('/'))));
            }
            if let Ok(url) = reqwest::Url::parse_with_params(&end, &query) {
                to = url.to_string();
            }
        }
    }
    let mut response = redirect(&to);
    let cookie = format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
        if state.settings.secure_cookies { "; Secure" } else { "" }
    );
    response
        .headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("INVARIANT: ASCII"));
    Ok(response)
}
