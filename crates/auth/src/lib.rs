//! spanblame's identity and access, as pure functions the server calls.
//!
//! - [`policy`]: roles, token scopes, the [`Principal`] a request acts as, and [`authorize`],
//!   the one decision every route goes through (table-tested).
//! - [`token`]: API tokens: generation, the public prefix, the stored digest, and whether a
//!   stored token may be used at a given time (expiry, revocation, rotation's grace window).
//! - [`jwt`]: verification of OIDC ID and access tokens and of identity-aware-proxy
//!   assertions against the issuer's keys, with the clock as an argument.
//! - [`identity`]: a verified identity's groups mapped to roles and teams.
//! - [`audit`]: the HMAC chain that makes the audit log tamper-evident.
//!
//! **Architecture Invariant:** no IO and no clock: keys, tokens and times come in as
//! arguments. The only effect is reading the operating system's random source for new
//! secrets. Fetching key sets, sessions and storage belong to `server` and `store`.
//!
//! May depend on: hashing, HMAC and JWT crates, the random source. **Never:** IO, a clock, HTTP
//! or SQL.

pub mod audit;
pub mod identity;
pub mod jwt;
pub mod policy;
pub mod token;

pub use identity::IdentityMapping;
pub use policy::{
    Decision, Need, Ownership, Policy, Principal, PrincipalKind, Refusal, RefusalKind, Role, Scope,
    Visibility, authorize,
};

/// A random string of `bytes` random bytes in unpadded base64url: session ids, CSRF tokens,
/// OIDC `state`, `nonce` and PKCE verifiers.
pub fn random_string(bytes: usize) -> Result<String, getrandom::Error> {
    use base64::Engine;
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buffer))
}

/// The PKCE `S256` code challenge of a verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn pkce_challenge_matches_rfc_7636_appendix_b() {
        assert_eq!(
            super::pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
