//! `[auth]`, `[auth.oidc]`, `[auth.proxy]`, `[[teams]]`, `[deploys]` and `[[tokens]]`: sign-in,
//! roles and ownership, and the doors left open.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::listen::{IngestConfig, TokenConfig};
use super::values::{parse_duration_nanos, read_secret};

/// Sign-in, roles, tokens and sessions.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `none` (no sign-in: whoever reaches the server is its operator; loopback by default),
    /// `oidc` (an OpenID provider, `[auth.oidc]`) or `proxy` (an identity-aware proxy's signed
    /// assertion, `[auth.proxy]`).
    pub mode: String,
    /// Clock-skew tolerance for signed tokens.
    pub clock_skew: String,
    /// How long a browser session lasts after sign-in.
    pub session_max_age: String,
    /// Default lifetime of new API tokens.
    pub token_max_age: String,
    /// How long a rotated token's old secret stays valid.
    pub token_rotation_grace: String,
    /// Sign-in and token requests per client address per minute.
    pub rate_limit_per_minute: u32,
    pub oidc: Option<OidcConfig>,
    pub proxy: Option<ProxyConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: "none".into(),
            clock_skew: "60s".into(),
            session_max_age: "12h".into(),
            token_max_age: "90d".into(),
            token_rotation_grace: "24h".into(),
            rate_limit_per_minute: 30,
            oidc: None,
            proxy: None,
        }
    }
}

/// With `mode = "oidc"`: sign-in with an OpenID provider (code flow with PKCE); its ID and
/// access tokens are also accepted as `Authorization: Bearer`. Roles come from the groups
/// claim.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL; its discovery document is read from
    /// `{issuer}/.well-known/openid-configuration`.
    #[schemars(example = &"https://login.example.com")]
    pub issuer: String,
    /// spanblame's client ID at the provider (the callback is `{server.public_url}/auth/callback`).
    #[schemars(example = &"spanblame")]
    pub client_id: String,
    /// The environment variable holding the client secret.
    #[schemars(example = &"SPANBLAME_OIDC_SECRET")]
    pub client_secret_env: Option<String>,
    /// Or a file holding it.
    #[schemars(example = &"/run/secrets/oidc-client-secret")]
    pub client_secret_file: Option<PathBuf>,
    /// Scopes asked for at sign-in besides `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Audiences accepted on bearer tokens besides `client_id` (an API's resource audience).
    #[serde(default)]
    #[schemars(example = ["spanblame-api"])]
    pub audiences: Vec<String>,
    /// The claim that lists a person's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Members of these groups are `admin`: everything, tokens, the audit log.
    #[serde(default)]
    #[schemars(example = ["sre-admins"])]
    pub admin_groups: Vec<String>,
    /// Members are `oncall_lead`: every service in every environment; they acknowledge and
    /// resolve findings.
    #[serde(default)]
    #[schemars(example = ["oncall-leads"])]
    pub oncall_lead_groups: Vec<String>,
    /// Members are `auditor`: the audit log.
    #[serde(default)]
    #[schemars(example = ["security"])]
    pub auditor_groups: Vec<String>,
}

/// With `mode = "proxy"`: sign-in by an identity-aware proxy (Pomerium, IAP, Cloudflare
/// Access, oauth2-proxy with JWTs) that sends a signed assertion on every request; a bare
/// `X-Forwarded-User` is never trusted.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// The header carrying the proxy's signed JWT.
    #[schemars(example = &"X-Pomerium-Jwt-Assertion")]
    pub assertion_header: String,
    /// Where the proxy publishes the keys that sign it.
    #[schemars(example = &"https://proxy.example.com/.well-known/pomerium/jwks.json")]
    pub jwks_url: String,
    /// The `iss` the assertion must carry.
    #[schemars(example = &"proxy.example.com")]
    pub issuer: String,
    /// The `aud` the assertion must carry.
    #[schemars(example = &"spanblame.example.com")]
    pub audience: String,
    /// The claim that lists a person's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Members of these groups are `admin`.
    #[serde(default)]
    #[schemars(example = ["sre-admins"])]
    pub admin_groups: Vec<String>,
    /// Members are `oncall_lead`.
    #[serde(default)]
    #[schemars(example = ["oncall-leads"])]
    pub oncall_lead_groups: Vec<String>,
    /// Members are `auditor`.
    #[serde(default)]
    #[schemars(example = ["security"])]
    pub auditor_groups: Vec<String>,
}

pub(super) fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile", "groups"].map(str::to_owned).to_vec()
}

pub(super) fn default_groups_claim() -> String {
    "groups".into()
}

/// A team: who belongs to it (identity-provider groups); `[[services]]` name their team, and
/// engineers see the services their teams own.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamConfig {
    /// What `[[services]]` call it.
    #[schemars(example = &"payments")]
    pub name: String,
    /// Members of these groups (from the OIDC or proxy groups claim) are on the team.
    #[serde(default)]
    #[schemars(example = ["payments-eng"])]
    pub oidc_groups: Vec<String>,
}

/// Who may report deploys through `POST /api/v1/deploys` (and `spanblame deploy`).
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DeploysConfig {
    /// Whether reporting a deploy needs a token with the `deploy` scope. Unset: only while
    /// `auth.mode` is `none` is it open.
    #[schemars(example = true)]
    pub require_auth: Option<bool>,
    /// Tokens for CI, beside API tokens with the `deploy` scope.
    pub tokens: Vec<TokenConfig>,
}

/// Doors left open although sign-in is configured, each with what it exposes and the fix
/// (`serve` and `check-config` warn with them).
pub fn open_doors(access: &server::AccessSettings) -> Vec<&'static str> {
    if matches!(access.mode, server::AuthMode::None) {
        return Vec::new();
    }
    let mut doors = Vec::new();
    if access.ingest_open {
        doors.push(
            "sign-in is configured but `ingest.require_auth` is false: anyone who reaches the OTLP ports may send spans of any service (a token's service restriction applies only to tokens sent); set `[ingest] require_auth = true` and give collectors `ingest` tokens",
        );
    }
    if access.deploys_open {
        doors.push(
            "sign-in is configured but `deploys.require_auth` is false: anyone who reaches the API may report deploys, which feed detection; set `[deploys] require_auth = true` (the default with sign-in) and give CI a `deploy` token",
        );
    }
    doors
}

/// The tokens of one `[[<section>.tokens]]` list, each with `scope`; an error when
/// `require_auth` is set without any (nothing could ever authenticate, unless API tokens are
/// created later, which is fine: then the list may be empty).
pub(super) fn configured_tokens(
    section: &str,
    scope: auth::Scope,
    tokens: &[TokenConfig],
    env: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<server::ConfiguredToken>> {
    tokens
        .iter()
        .enumerate()
        .map(|(idx, token)| {
            let key = format!("`{section}.tokens[{idx}]` (`{}`)", token.name);
            let secret =
                read_secret(&key, token.secret_env.as_deref(), token.secret_file.as_deref(), env)?;
            Ok(server::ConfiguredToken {
                name: token.name.clone(),
                scope,
                sha256: auth::token::digest(&secret),
            })
        })
        .collect()
}

/// What the access settings are resolved from: `[auth]`, `[[teams]]`, `[deploys]`,
/// `[ingest]`, `server.public_url` and `retention.audit`.
pub(super) struct AccessSections<'a> {
    pub(super) auth: &'a AuthConfig,
    pub(super) teams: &'a [TeamConfig],
    pub(super) deploys: &'a DeploysConfig,
    pub(super) ingest: &'a IngestConfig,
    pub(super) public_url: Option<&'a str>,
    pub(super) audit_retention: &'a str,
}

/// Sign-in, role mapping, tokens and sessions, checked.
pub(super) fn resolve_access(
    config: AccessSections<'_>,
    env: &BTreeMap<String, String>,
    changes: &server::ChangeSettings,
) -> anyhow::Result<server::AccessSettings> {
    let auth = config.auth;
    let duration = |key: &str, value: &str| {
        parse_duration_nanos(value).with_context(|| format!("`auth.{key}` = `{value}`"))
    };
    let mut configured =
        configured_tokens("ingest", auth::Scope::Ingest, &config.ingest.tokens, env)?;
    configured.extend(configured_tokens(
        "deploys",
        auth::Scope::Deploy,
        &config.deploys.tokens,
        env,
    )?);
    let url = |key: &str, value: &str| -> anyhow::Result<String> {
        let value = value.trim().trim_end_matches('/');
        if value.starts_with("https://") || value.starts_with("http://") {
            Ok(value.to_owned())
        } else {
            bail!("`{key}` = `{value}` must be an `https://` URL")
        }
    };
    // How the identity's groups map to roles; teams come from `[[teams]]`.
    let groups_mapping = |claim: &str, admin: &[String], lead: &[String], auditor: &[String]| {
        auth::IdentityMapping {
            groups_claim: claim.to_owned(),
            admin_groups: admin.to_vec(),
            oncall_lead_groups: lead.to_vec(),
            auditor_groups: auditor.to_vec(),
            teams: config.teams.iter().map(|t| (t.name.clone(), t.oidc_groups.clone())).collect(),
        }
    };
    let (mode, identity) = match auth.mode.as_str() {
        "none" => (server::AuthMode::None, groups_mapping("groups", &[], &[], &[])),
        "oidc" => {
            let oidc = auth.oidc.as_ref().context(
                "`auth.mode` = `oidc` needs an `[auth.oidc]` table with `issuer`, `client_id` and `client_secret_env`",
            )?;
            let client_secret = read_secret(
                "`auth.oidc` client secret",
                oidc.client_secret_env.as_deref(),
                oidc.client_secret_file.as_deref(),
                env,
            )?;
            if oidc.client_id.trim().is_empty() {
                bail!(
                    "`auth.oidc.client_id` must not be empty: use the client id registered with the provider"
                );
            }
            (
                server::AuthMode::Oidc(server::OidcSettings {
                    issuer: url("auth.oidc.issuer", &oidc.issuer)?,
                    client_id: oidc.client_id.clone(),
                    client_secret,
                    scopes: oidc.scopes.clone(),
                    audiences: oidc.audiences.clone(),
                }),
                groups_mapping(
                    &oidc.groups_claim,
                    &oidc.admin_groups,
                    &oidc.oncall_lead_groups,
                    &oidc.auditor_groups,
                ),
            )
        }
        "proxy" => {
            let proxy = auth.proxy.as_ref().context(
                "`auth.mode` = `proxy` needs an `[auth.proxy]` table with `assertion_header`, `jwks_url`, `issuer` and `audience`",
            )?;
            let header = proxy.assertion_header.trim().to_ascii_lowercase();
            if axum_header_name_invalid(&header) {
                bail!(
                    "`auth.proxy.assertion_header` = `{}` is not an HTTP header name",
                    proxy.assertion_header
                );
            }
            if proxy.audience.trim().is_empty() || proxy.issuer.trim().is_empty() {
                bail!(
                    "`auth.proxy.issuer` and `auth.proxy.audience` must be set exactly as the proxy signs them"
                );
            }
            (
                server::AuthMode::Proxy(server::ProxySettings {
                    assertion_header: header,
                    jwks_url: url("auth.proxy.jwks_url", &proxy.jwks_url)?,
                    issuer: proxy.issuer.trim().to_owned(),
                    audience: proxy.audience.trim().to_owned(),
                }),
                groups_mapping(
                    &proxy.groups_claim,
                    &proxy.admin_groups,
                    &proxy.oncall_lead_groups,
                    &proxy.auditor_groups,
                ),
            )
        }
        other => bail!("`auth.mode` = `{other}` is not valid; use `none`, `oidc` or `proxy`"),
    };
    for service in &changes.services {
        if let Some(team) = &service.team
            && !config.teams.is_empty()
            && !config.teams.iter().any(|t| &t.name == team)
        {
            bail!(
                "`services` (`{}`): `team` = `{team}` is not a configured `[[teams]]` name",
                service.service
            );
        }
    }
    let secure_cookies = match config.public_url {
        Some(url) => match url.strip_prefix("http://") {
            // Browsers keep `Secure` cookies on plain HTTP only for loopback.
            Some(rest) => ["127.0.0.1", "localhost", "[::1]"].iter().any(|h| rest.starts_with(h)),
            None => true,
        },
        None => true,
    };
    let nanos_secs = |n: u64| n / 1_000_000_000;
    let deploys_open = match config.deploys.require_auth {
        Some(require) => !require,
        None => matches!(mode, server::AuthMode::None),
    };
    Ok(server::AccessSettings {
        mode,
        ingest_open: !config.ingest.require_auth,
        // A deploy report returns the service's commit history: with sign-in configured it
        // needs a `deploy` token unless the operator opens it explicitly.
        deploys_open,
        configured_tokens: configured,
        identity,
        leeway_secs: nanos_secs(duration("clock_skew", &auth.clock_skew)?),
        session_max_age_nanos: duration("session_max_age", &auth.session_max_age)?,
        token_default_max_age_nanos: duration("token_max_age", &auth.token_max_age)?,
        token_rotation_grace_nanos: duration("token_rotation_grace", &auth.token_rotation_grace)?,
        audit_max_age_nanos: parse_duration_nanos(config.audit_retention)
            .with_context(|| format!("`retention.audit` = `{}`", config.audit_retention))?,
        secure_cookies,
        rate_limit_per_minute: auth.rate_limit_per_minute,
    })
}

pub(super) fn axum_header_name_invalid(name: &str) -> bool {
    name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
