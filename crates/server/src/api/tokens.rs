//! The token admin API (`/api/v1/tokens`): create, list (`?stale=true`), rotate, revoke.
//! Secrets are shown once, in the answer to create and rotate; the store keeps digests.

use std::collections::BTreeSet;
use std::sync::Arc;

use auth::Scope;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use store::StoredToken;

use crate::AppState;
use edge::access::Caller;
use edge::error::{ApiError, ErrorCode, read_capped};
use views::rfc3339;

const MAX_TOKEN_BODY_BYTES: usize = 16 * 1024;
const DAY_NANOS: u64 = 24 * 3600 * 1_000_000_000;
/// `?stale=true`: unused this long...
const STALE_UNUSED_NANOS: u64 = 30 * DAY_NANOS;
/// ... or older than this.
const STALE_AGE_NANOS: u64 = 90 * DAY_NANOS;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    name: String,
    scopes: Vec<String>,
    services: Option<Vec<String>>,
    environments: Option<Vec<String>>,
    /// A duration such as `90d` or `12h`; default `auth.token_max_age` (90 days).
    expires_in: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    /// How long the old secret stays valid; default `auth.token_rotation_grace` (1 day).
    grace: Option<String>,
}

fn view(token: &StoredToken, now_unix_nanos: u64) -> Value {
    let status = match auth::token::check_usable(
        &token.prefix,
        &edge::access::token_times(token),
        now_unix_nanos,
        rfc3339,
    ) {
        Ok(()) if token.superseded_by.is_some() => "rotating",
        Ok(()) => "active",
        Err(auth::token::TokenRefusal::Revoked { .. }) => "revoked",
        Err(_) => "expired",
    };
    json!({
        "prefix": token.prefix,
        "name": token.name,
        "scopes": token.scopes,
        "services": token.services,
        "environments": token.environments,
        "status": status,
        "created_at": rfc3339(token.created_unix_nanos),
        "created_by": token.created_by,
        "expires_at": rfc3339(token.expires_unix_nanos),
        "last_used_at": token.last_used_unix_nanos.map(rfc3339),
        "revoked_at": token.revoked_unix_nanos.map(rfc3339),
        "superseded_by": token.superseded_by,
        "rotated_from": token.rotated_from,
    })
}

fn is_stale(token: &StoredToken, now: u64) -> bool {
    let live =
        auth::token::check_usable(&token.prefix, &edge::access::token_times(token), now, rfc3339)
            .is_ok();
    let last_activity = token.last_used_unix_nanos.unwrap_or(token.created_unix_nanos);
    live && (now.saturating_sub(last_activity) >= STALE_UNUSED_NANOS
        || now.saturating_sub(token.created_unix_nanos) >= STALE_AGE_NANOS)
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListParams {
    stale: Option<bool>,
}

/// A token's restrictions as sets.
fn reach(token: &StoredToken) -> (Option<BTreeSet<String>>, Option<BTreeSet<String>>) {
    let set = |items: &Option<Vec<String>>| items.as_ref().map(|v| v.iter().cloned().collect());
    (set(&token.services), set(&token.environments))
}

/// Refuses a caller who may not manage `token` (a restricted token managing a wider one).
fn check_manage(caller: &Caller, token: &StoredToken) -> Result<(), ApiError> {
    let (services, environments) = reach(token);
    caller
        .principal
        .may_manage(services.as_ref(), environments.as_ref())
        .map_err(|reason| ApiError::new(ErrorCode::PermissionDenied, reason))
}

pub(crate) async fn list_tokens(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let accounts = state.ctx().store.accounts().clone();
    let tokens = tokio::task::spawn_blocking(move || accounts.tokens())
        .await
        .map_err(ApiError::internal)??;
    let now = state.ctx().clock.now_unix_nanos();
    let tokens: Vec<Value> = tokens
        .iter()
        .filter(|t| !params.stale.unwrap_or(false) || is_stale(t, now))
        .filter(|t| check_manage(&caller, t).is_ok())
        .map(|t| view(t, now))
        .collect();
    Ok(Json(json!({ "tokens": tokens })))
}

/// A new token with a fresh secret: the row to store and the secret to show once.
fn mint(template: StoredToken) -> Result<(StoredToken, String), ApiError> {
    let secret = auth::token::generate().map_err(ApiError::internal)?;
    Ok((
        StoredToken {
            prefix: secret.prefix.clone(),
            secret_sha256: secret.sha256.to_vec(),
            ..template
        },
        secret.secret,
    ))
}

fn names(field: &str, items: Option<Vec<String>>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(items) = items else { return Ok(None) };
    let items: Vec<String> = items.into_iter().map(|s| s.trim().to_owned()).collect();
    if items.is_empty() || items.iter().any(|s| s.is_empty() || s.contains(char::is_whitespace)) {
        return Err(ApiError::invalid(format!(
            "`{field}` must be a non-empty list of names without spaces (omit it for no restriction)"
        )));
    }
    Ok(Some(items))
}

pub(crate) async fn create_token(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = read_capped(
        body,
        MAX_TOKEN_BODY_BYTES,
        "token",
        state.settings.connections.body_read_timeout,
    )
    .await?;
    let request: CreateRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "invalid token request: {e}; send JSON like {{\"name\": \"ci-deploys\", \"scopes\": [\"deploy\"], \"expires_in\": \"90d\"}}"
        ))
    })?;
    let name = request.name.trim().to_owned();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::invalid("`name` must be 1 to 100 characters: what the token is for"));
    }
    let mut scopes = Vec::new();
    for scope in &request.scopes {
        let parsed = Scope::parse(scope).ok_or_else(|| {
            ApiError::invalid(format!(
                "unknown scope `{scope}`; use ingest, deploy, webhook, read, admin or revert"
            ))
        })?;
        if !scopes.contains(&parsed) {
            scopes.push(parsed);
        }
    }
    if scopes.is_empty() {
        return Err(ApiError::invalid(
            "`scopes` must name at least one of ingest, deploy, webhook, read, admin or revert",
        ));
    }
    let max_age = match &request.expires_in {
        None => state.settings.access.token_default_max_age_nanos,
        Some(text) => {
            views::parse_duration_nanos(text).ok().filter(|n| *n > 0).ok_or_else(|| {
                ApiError::invalid(format!(
                    "`expires_in` = `{text}` is not a duration such as `90d`, `12h` or `30m`"
                ))
            })?
        }
    };
    let services = names("services", request.services)?;
    let environments = names("environments", request.environments)?;
    let set = |items: &Option<Vec<String>>| -> Option<BTreeSet<String>> {
        items.as_ref().map(|v| v.iter().cloned().collect())
    };
    caller
        .principal
        .may_grant(
            &scopes.iter().copied().collect(),
            set(&services).as_ref(),
            set(&environments).as_ref(),
        )
        .map_err(|reason| ApiError::new(ErrorCode::PermissionDenied, reason))?;
    let now = state.ctx().clock.now_unix_nanos();
    let (token, secret) = mint(StoredToken {
        prefix: String::new(),
        name,
        secret_sha256: Vec::new(),
        scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        services,
        environments,
        created_unix_nanos: now,
        created_by: caller.principal.id.clone(),
        expires_unix_nanos: now.saturating_add(max_age),
        last_used_unix_nanos: None,
        revoked_unix_nanos: None,
        superseded_by: None,
        rotated_from: None,
    })?;
    let accounts = state.ctx().store.accounts().clone();
    let stored = token.clone();
    tokio::task::spawn_blocking(move || accounts.insert_token(&stored))
        .await
        .map_err(ApiError::internal)??;
    Ok((StatusCode::CREATED, Json(json!({ "token": view(&token, now), "secret": secret }))))
}

async fn find(state: &AppState, prefix: &str) -> Result<StoredToken, ApiError> {
    let accounts = state.ctx().store.accounts().clone();
    let wanted = prefix.to_owned();
    tokio::task::spawn_blocking(move || accounts.token(&wanted))
        .await
        .map_err(ApiError::internal)??
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("no token with prefix `{prefix}`; `GET /api/v1/tokens` lists them"),
            )
        })
}

pub(crate) async fn rotate_token(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(prefix): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = read_capped(
        body,
        MAX_TOKEN_BODY_BYTES,
        "rotation",
        state.settings.connections.body_read_timeout,
    )
    .await?;
    let request: RotateRequest = if body.is_empty() {
        RotateRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::invalid(format!(
                "invalid rotation: {e}; send {{\"grace\": \"24h\"}} or nothing"
            ))
        })?
    };
    let grace = match &request.grace {
        None => state.settings.access.token_rotation_grace_nanos,
        Some(text) => views::parse_duration_nanos(text).map_err(|_| {
            ApiError::invalid(format!("`grace` = `{text}` is not a duration such as `24h` or `0s`"))
        })?,
    };
    let old = find(&state, &prefix).await?;
    check_manage(&caller, &old)?;
    let now = state.ctx().clock.now_unix_nanos();
    auth::token::check_usable(&old.prefix, &edge::access::token_times(&old), now, rfc3339)
        .map_err(|refusal| ApiError::invalid(format!("cannot rotate: {refusal}")))?;
    if let Some(successor) = &old.superseded_by {
        return Err(ApiError::invalid(format!(
            "token `{prefix}` was already rotated; rotate its replacement `{successor}`"
        )));
    }
    let lifetime = old.expires_unix_nanos.saturating_sub(old.created_unix_nanos);
    let (new, secret) = mint(StoredToken {
        created_unix_nanos: now,
        created_by: caller.principal.id.clone(),
        expires_unix_nanos: now.saturating_add(lifetime),
        last_used_unix_nanos: None,
        rotated_from: Some(old.prefix.clone()),
        ..old.clone()
    })?;
    let grace_end = now.saturating_add(grace);
    let accounts = state.ctx().store.accounts().clone();
    let stored = new.clone();
    let rotated =
        tokio::task::spawn_blocking(move || accounts.rotate_token(&prefix, &stored, grace_end))
            .await
            .map_err(ApiError::internal)??;
    if !rotated {
        return Err(ApiError::invalid(
            "the token changed meanwhile (revoked or rotated); list tokens and try again",
        ));
    }
    let old_until = grace_end.min(old.expires_unix_nanos);
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": view(&new, now),
            "secret": secret,
            "previous": { "prefix": old.prefix, "valid_until": rfc3339(old_until) },
        })),
    ))
}

pub(crate) async fn revoke_token(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(prefix): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_manage(&caller, &find(&state, &prefix).await?)?;
    let now = state.ctx().clock.now_unix_nanos();
    let accounts = state.ctx().store.accounts().clone();
    let wanted = prefix.clone();
    tokio::task::spawn_blocking(move || accounts.revoke_token(&wanted, now))
        .await
        .map_err(ApiError::internal)??;
    let token = find(&state, &prefix).await?;
    Ok(Json(json!({ "token": view(&token, now) })))
}
