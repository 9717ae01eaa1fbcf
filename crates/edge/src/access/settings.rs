//! Access settings: the sign-in mode (none, OIDC, a signing proxy), tokens from the
//! configuration, identity mapping, and the lifetimes of sessions, tokens and audit records.

use auth::{IdentityMapping, Scope};

/// How people sign in.
#[derive(Debug, Clone, Default)]
pub enum AuthMode {
    /// No sign-in: whoever reaches the server is its local operator (an admin). Listeners
    /// are on loopback by default.
    #[default]
    None,
    Oidc(OidcSettings),
    Proxy(ProxySettings),
}

#[derive(Clone)]
pub struct OidcSettings {
    /// The provider's issuer URL; discovery is `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Scopes asked for at sign-in (`openid` is always asked for).
    pub scopes: Vec<String>,
    /// Audiences accepted on bearer tokens besides `client_id` (an API resource's audience).
    pub audiences: Vec<String>,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// The header carrying the proxy's signed JWT (`X-Pomerium-Jwt-Assertion`,
    /// `X-Goog-IAP-JWT-Assertion`, `Cf-Access-Jwt-Assertion`...).
    pub assertion_header: String,
    pub jwks_url: String,
    pub issuer: String,
    pub audience: String,
}

/// A token from the configuration (`[[ingest.tokens]]`, `[[deploys.tokens]]`).
#[derive(Clone)]
pub struct ConfiguredToken {
    pub name: String,
    pub scope: Scope,
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for ConfiguredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfiguredToken")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Everything about access the configuration decides.
#[derive(Debug, Clone)]
pub struct AccessSettings {
    pub mode: AuthMode,
    pub ingest_open: bool,
    pub deploys_open: bool,
    pub configured_tokens: Vec<ConfiguredToken>,
    pub identity: IdentityMapping,
    /// Clock-skew tolerance for JWTs.
    pub leeway_secs: u64,
    pub session_max_age_nanos: u64,
    pub token_default_max_age_nanos: u64,
    pub token_rotation_grace_nanos: u64,
    pub audit_max_age_nanos: u64,
    /// `Secure` on cookies; off only for a plain-`http://` `public_url` other than loopback.
    pub secure_cookies: bool,
    /// Sign-in and token requests per client address per minute.
    pub rate_limit_per_minute: u32,
}

impl Default for AccessSettings {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600 * 1_000_000_000;
        AccessSettings {
            mode: AuthMode::None,
            ingest_open: true,
            deploys_open: true,
            configured_tokens: Vec::new(),
            identity: IdentityMapping {
                groups_claim: "groups".into(),
                ..IdentityMapping::default()
            },
            leeway_secs: 60,
            session_max_age_nanos: DAY / 2,
            token_default_max_age_nanos: 90 * DAY,
            token_rotation_grace_nanos: DAY,
            audit_max_age_nanos: 400 * DAY,
            secure_cookies: true,
            rate_limit_per_minute: 30,
        }
    }
}
