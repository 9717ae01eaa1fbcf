//! Who is calling: a bearer token (an API token `sbt_…` looked up by prefix and compared by
//! digest, a token from the configuration, or with OIDC a provider-signed JWT checked against
//! the provider's key set), else the proxy's signed assertion, else the session cookie; and
//! the OIDC discovery document and key sets this needs, fetched and refreshed under limits.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use auth::jwt::{Expectations, JwtError, KeySet};
use auth::{IdentityMapping, Principal, Scope};
use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use store::StoredToken;
use subtle::ConstantTimeEq;

use super::settings::AuthMode;
use crate::error::{ApiError, ErrorCode};
use crate::{Guard, lock};

pub const SESSION_COOKIE: &str = "spanblame_session";

/// The parts of an OIDC discovery document spanblame uses.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub end_session_endpoint: Option<String>,
}

/// A JWKS fetched from a URL, fetched again when a token names a key it does not hold (the
/// issuer rotated its keys): at once for a key id not asked about before, else at most every
/// [`KeySource::MIN_REFETCH`]; never more than [`KeySource::MAX_FETCHES_PER_MINUTE`], so
/// tokens with made-up key ids cannot make spanblame hammer the provider.
pub struct KeySource {
    url: Mutex<Option<String>>,
    keys: Mutex<Fetched>,
}

#[derive(Default)]
struct Fetched {
    keys: KeySet,
    /// When each recent fetch happened (the last minute's).
    fetches: Vec<Instant>,
    /// Key ids that already caused a fetch.
    asked: Vec<String>,
}

impl KeySource {
    const MIN_REFETCH: Duration = Duration::from_secs(5);
    const MAX_FETCHES_PER_MINUTE: usize = 12;

    pub fn new(url: Option<String>) -> KeySource {
        KeySource { url: Mutex::new(url), keys: Mutex::new(Fetched::default()) }
    }

    pub fn set_url(&self, url: &str) {
        *lock(&self.url) = Some(url.to_owned());
    }

    /// Whether a token naming the unknown `kid` may trigger a fetch now (and records it).
    fn may_fetch(&self, kid: &str) -> bool {
        let mut fetched = lock(&self.keys);
        fetched.fetches.retain(|at| at.elapsed() < Duration::from_secs(60));
        let last = fetched.fetches.last().map(Instant::elapsed);
        let new_kid = !fetched.asked.iter().any(|k| k == kid);
        let allowed = fetched.keys.is_empty()
            || (fetched.fetches.len() < KeySource::MAX_FETCHES_PER_MINUTE
                && (new_kid || last.is_none_or(|since| since >= KeySource::MIN_REFETCH)));
        if allowed && new_kid {
            if fetched.asked.len() >= 64 {
                fetched.asked.remove(0);
            }
            fetched.asked.push(kid.to_owned());
        }
        allowed
    }

    /// Verifies `token`, fetching the key set first if it is empty or lacks the token's key.
    pub async fn verify(
        &self,
        state: &Guard,
        token: &str,
        expect: &Expectations,
    ) -> Result<auth::jwt::Claims, ApiError> {
        let now_secs = state.ctx().clock.now_unix_nanos() / 1_000_000_000;
        let keys = lock(&self.keys).keys.clone();
        let first = if keys.is_empty() {
            Err(JwtError::UnknownKey { kid: String::new() })
        } else {
            auth::jwt::verify(token, &keys, expect, now_secs)
        };
        match first {
            Err(JwtError::UnknownKey { kid }) => {
                if !self.may_fetch(&kid) {
                    return Err(invalid_jwt(&JwtError::UnknownKey { kid }));
                }
                let fresh = self.fetch(state).await?;
                auth::jwt::verify(token, &fresh, expect, now_secs).map_err(|e| invalid_jwt(&e))
            }
            other => other.map_err(|e| invalid_jwt(&e)),
        }
    }

    async fn fetch(&self, state: &Guard) -> Result<KeySet, ApiError> {
        let url = lock(&self.url)
            .clone()
            .ok_or_else(|| unavailable("the identity provider's key set URL is not known yet"))?;
        let body = fetch_json(state, &url).await?;
        let keys = KeySet::from_json(&body).map_err(|e| {
            tracing::warn!(url, error = %e, "unusable key set");
            unavailable(&format!("the key set at `{url}` is unusable: {e}"))
        })?;
        let mut fetched = lock(&self.keys);
        fetched.keys = keys.clone();
        fetched.fetches.push(Instant::now());
        Ok(keys)
    }
}

/// GETs a small JSON document (discovery, JWKS) from an identity provider or proxy.
pub(crate) async fn fetch_json(state: &Guard, url: &str) -> Result<Vec<u8>, ApiError> {
    let client =
        state.jobs.http.as_ref().map_err(|e| unavailable(&format!("no HTTP client: {e}")))?;
    let response = client
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| unavailable(&format!("cannot reach `{url}`: {e}")))?;
    if !response.status().is_success() {
        return Err(unavailable(&format!("`{url}` answered {}", response.status())));
    }
    jobs::outbound::read_capped(response, 1024 * 1024)
        .await
        .map_err(|e| unavailable(&format!("reading `{url}`: {e}")))
}

fn unavailable(message: &str) -> ApiError {
    tracing::warn!(message, "identity provider unavailable");
    ApiError::new(ErrorCode::Unavailable, message)
}

fn invalid_jwt(e: &JwtError) -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, format!("the bearer token is refused: {e}"))
}

/// The OIDC discovery document, fetched once (and again after a failure).
pub async fn discovery(state: &Guard) -> Result<Discovery, ApiError> {
    let AuthMode::Oidc(oidc) = &state.settings.mode else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "sign-in is not configured on this server (`auth.mode` is not `oidc`)",
        ));
    };
    let mut cached = state.oidc_discovery.lock().await;
    if let Some(found) = cached.as_ref() {
        return Ok(found.clone());
    }
    let url = format!("{}/.well-known/openid-configuration", oidc.issuer.trim_end_matches('/'));
    let body = fetch_json(state, &url).await?;
    let found: Discovery = serde_json::from_slice(&body)
        .map_err(|e| unavailable(&format!("`{url}` is not an OpenID discovery document: {e}")))?;
    if found.issuer.trim_end_matches('/') != oidc.issuer.trim_end_matches('/') {
        return Err(unavailable(&format!(
            "`{url}` names issuer `{}`, not the configured `{}`; set `auth.oidc.issuer` to exactly the provider's issuer",
            found.issuer, oidc.issuer
        )));
    }
    if let Some(keys) = &state.oidc_keys {
        keys.set_url(&found.jwks_uri);
    }
    *cached = Some(found.clone());
    Ok(found)
}

/// Who is calling. `Err` only when credentials were offered and are not valid (a missing
/// credential makes the caller anonymous, and the decision refuses what needs one).
pub async fn authenticate(
    state: &Guard,
    headers: &HeaderMap,
) -> Result<(Principal, Option<store::StoredSession>), ApiError> {
    let settings = &state.settings;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let bearer = match (text(header::AUTHORIZATION.as_str()), text("lightstep-access-token")) {
        (Some(value), _) => Some(
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::Unauthenticated,
                        "the `Authorization` header must be `Bearer <token>`",
                    )
                })?
                .trim(),
        ),
        (None, lightstep) => lightstep,
    };
    if let Some(bearer) = bearer {
        return bearer_principal(state, bearer).await.map(|p| (p, None));
    }
    match &settings.mode {
        AuthMode::Proxy(proxy) => {
            if let Some(assertion) = text(&proxy.assertion_header) {
                let keys =
                    state.proxy_keys.as_ref().expect("INVARIANT: proxy mode has a key source");
                let expect = Expectations {
                    issuer: proxy.issuer.clone(),
                    audiences: vec![proxy.audience.clone()],
                    leeway_secs: settings.leeway_secs,
                };
                let claims = keys.verify(state, assertion, &expect).await.map_err(|e| {
                    ApiError::new(
                        ErrorCode::Unauthenticated,
                        e.message.replace(
                            "the bearer token",
                            &format!("the `{}` assertion", proxy.assertion_header),
                        ),
                    )
                })?;
                let id = IdentityMapping::person_id(&claims);
                return Ok((
                    settings.identity.principal(&id, &settings.identity.groups(&claims)),
                    None,
                ));
            }
        }
        AuthMode::Oidc(_) => {
            if let Some(id) = session_cookie(headers) {
                let digest: [u8; 32] = Sha256::digest(id.as_bytes()).into();
                let accounts = state.ctx().store.accounts().clone();
                let now = state.ctx().clock.now_unix_nanos();
                let session = tokio::task::spawn_blocking(move || accounts.session(&digest, now))
                    .await
                    .map_err(ApiError::internal)??;
                if let Some(session) = session {
                    let stored: SessionPrincipal =
                        serde_json::from_str(&session.principal).map_err(ApiError::internal)?;
                    let principal = settings.identity.principal(&stored.id, &stored.groups);
                    return Ok((principal, Some(session)));
                }
            }
        }
        AuthMode::None => return Ok((Principal::local(), None)),
    }
    Ok((Principal::anonymous(), None))
}

/// What a session keeps of the person: roles and teams are mapped from the groups at every
/// request, so a configuration change applies to sessions already open.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct SessionPrincipal {
    pub id: String,
    pub groups: Vec<String>,
}

pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

async fn bearer_principal(state: &Guard, bearer: &str) -> Result<Principal, ApiError> {
    let settings = &state.settings;
    let now = state.ctx().clock.now_unix_nanos();
    if let Some(offered) = auth::token::parse(bearer) {
        let accounts = state.ctx().store.accounts().clone();
        let prefix = offered.prefix.clone();
        let stored = tokio::task::spawn_blocking(move || accounts.token(&prefix))
            .await
            .map_err(ApiError::internal)??;
        let Some(stored) =
            stored.filter(|t| auth::token::digest_matches(&t.secret_sha256, &offered.sha256))
        else {
            return Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "the token is not known to this server",
            ));
        };
        auth::token::check_usable(&stored.prefix, &token_times(&stored), now, views::rfc3339)
            .map_err(|refusal| ApiError::new(ErrorCode::Unauthenticated, refusal.to_string()))?;
        state.jobs.token_uses.record(&stored.prefix, now);
        return Ok(token_principal(&stored));
    }
    let offered = auth::token::digest(bearer);
    let configured = settings
        .configured_tokens
        .iter()
        .fold(None, |found, t| if bool::from(t.sha256.ct_eq(&offered)) { Some(t) } else { found });
    if let Some(token) = configured {
        return Ok(Principal::token(
            &format!("config:{}", token.name),
            BTreeSet::from([token.scope]),
            None,
            None,
        ));
    }
    if let (AuthMode::Oidc(oidc), Some(keys)) = (&settings.mode, &state.oidc_keys)
        && bearer.split('.').count() == 3
    {
        discovery(state).await?;
        let mut audiences = vec![oidc.client_id.clone()];
        audiences.extend(oidc.audiences.iter().cloned());
        let expect = Expectations {
            issuer: oidc.issuer.clone(),
            audiences,
            leeway_secs: settings.leeway_secs,
        };
        let claims = keys.verify(state, bearer, &expect).await?;
        let id = IdentityMapping::person_id(&claims);
        return Ok(settings.identity.principal(&id, &settings.identity.groups(&claims)));
    }
    Err(ApiError::new(
        ErrorCode::Unauthenticated,
        "the token is not valid: it is neither a spanblame API token (`sbt_…`) known here nor one of the configured tokens",
    ))
}

pub fn token_times(token: &StoredToken) -> auth::token::TokenTimes {
    auth::token::TokenTimes {
        expires_unix_nanos: token.expires_unix_nanos,
        revoked_unix_nanos: token.revoked_unix_nanos,
        superseded_by: token.superseded_by.clone(),
    }
}

fn token_principal(token: &StoredToken) -> Principal {
    let set = |items: &Option<Vec<String>>| {
        items.as_ref().map(|v| v.iter().cloned().collect::<BTreeSet<_>>())
    };
    Principal::token(
        &format!("token:{}", token.prefix),
        token.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
        set(&token.services),
        set(&token.environments),
    )
}
