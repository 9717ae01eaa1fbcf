//! Who may send spans or report deploys: the token check, in one place.
//!
//! Tokens arrive as `Authorization: Bearer <token>` or, for exporters configured for
//! Lightstep, `lightstep-access-token: <token>`. Configured tokens are kept only as SHA-256
//! digests and compared in constant time. Full token management (scopes, expiry, rotation)
//! replaces the configured list in a later issue, behind this same function.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, ErrorCode};

#[derive(Clone, Default)]
pub struct TokenAuth {
    required: bool,
    /// What the tokens allow, for messages: "sending spans", "reporting deploys".
    purpose: &'static str,
    token_digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuth")
            .field("required", &self.required)
            .field("num_tokens", &self.token_digests.len())
            .finish()
    }
}

impl TokenAuth {
    /// Anyone may (the local default and the demo).
    pub fn open() -> TokenAuth {
        TokenAuth::default()
    }

    /// Only holders of one of `tokens` may do `purpose` ("sending spans").
    pub fn with_tokens<'a>(
        purpose: &'static str,
        tokens: impl IntoIterator<Item = &'a str>,
    ) -> TokenAuth {
        TokenAuth {
            required: true,
            purpose,
            token_digests: tokens.into_iter().map(digest).collect(),
        }
    }

    /// Checks the credentials from request headers (HTTP) or metadata (gRPC).
    pub fn check(
        &self,
        authorization: Option<&str>,
        lightstep: Option<&str>,
    ) -> Result<(), ApiError> {
        if !self.required {
            return Ok(());
        }
        let token = match (authorization, lightstep) {
            (Some(value), _) => {
                value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).ok_or_else(
                    || unauthenticated("the `Authorization` header must be `Bearer <token>`"),
                )?
            }
            (None, Some(token)) => token,
            (None, None) => {
                return Err(unauthenticated(
                    "this server requires a token: send `Authorization: Bearer <token>` (or `lightstep-access-token`)",
                ));
            }
        };
        let offered = digest(token.trim());
        let known = self
            .token_digests
            .iter()
            .fold(subtle::Choice::from(0), |found, d| found | d.ct_eq(&offered));
        if bool::from(known) {
            Ok(())
        } else {
            Err(unauthenticated(&format!("the token is not valid for {}", self.purpose)))
        }
    }
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, message)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_bearer_and_lightstep_alias_and_refuses_the_rest() {
        let auth = TokenAuth::with_tokens("sending spans", ["s3cret"]);
        assert!(auth.check(Some("Bearer s3cret"), None).is_ok());
        assert!(auth.check(None, Some("s3cret")).is_ok());
        assert!(auth.check(Some("Bearer wrong"), None).is_err());
        assert!(auth.check(Some("s3cret"), None).is_err());
        assert!(auth.check(None, None).is_err());
        assert!(TokenAuth::open().check(None, None).is_ok());
    }
}
