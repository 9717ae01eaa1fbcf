//! API tokens: how a secret is made, shown once, kept only as a digest, found again by its
//! public prefix, and whether a stored token may still be used at a given time.
//!
//! A token reads `sbt_<prefix>_<secret>`: `prefix` is 8 hex digits, public, the row's key;
//! `secret` is 256 random bits in unpadded base64url. Only SHA-256 of the whole string is
//! stored. A slow password hash buys nothing for 256 random bits and would cost every request.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const MARK: &str = "sbt_";
const PREFIX_HEX_DIGITS: usize = 8;
const SECRET_BYTES: usize = 32;

/// A freshly generated token: `secret` is shown to its owner once and never stored.
#[derive(Clone)]
pub struct NewToken {
    pub prefix: String,
    pub secret: String,
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// Generates a token from the operating system's random source.
pub fn generate() -> Result<NewToken, getrandom::Error> {
    let mut bytes = [0u8; 4 + SECRET_BYTES];
    getrandom::fill(&mut bytes)?;
    let prefix: String = bytes[..4].iter().map(|b| format!("{b:02x}")).collect();
    let secret = format!("{MARK}{prefix}_{}", URL_SAFE_NO_PAD.encode(&bytes[4..]));
    Ok(NewToken { sha256: digest(&secret), prefix, secret })
}

/// What an offered credential looks like to the lookup: its prefix and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedToken {
    pub prefix: String,
    pub sha256: [u8; 32],
}

/// `Some` when `offered` has the shape of a spanblame API token (it may still be unknown).
pub fn parse(offered: &str) -> Option<OfferedToken> {
    let rest = offered.strip_prefix(MARK)?;
    let (prefix, secret) = rest.split_once('_')?;
    let well_formed = prefix.len() == PREFIX_HEX_DIGITS
        && prefix.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && URL_SAFE_NO_PAD.decode(secret).is_ok_and(|bytes| bytes.len() == SECRET_BYTES);
    well_formed.then(|| OfferedToken { prefix: prefix.to_owned(), sha256: digest(offered) })
}

/// Constant-time comparison of a stored digest with an offered one.
pub fn digest_matches(stored: &[u8], offered: &[u8; 32]) -> bool {
    stored.len() == 32 && bool::from(stored.ct_eq(offered))
}

pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The times that decide whether a stored token may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenTimes {
    pub expires_unix_nanos: u64,
    pub revoked_unix_nanos: Option<u64>,
    /// Rotation: the token that replaced this one; it stays valid until `expires_unix_nanos`.
    pub superseded_by: Option<String>,
}

/// Why a known token is refused; the message says what happened and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("token `{prefix}` was revoked at {at}; ask an admin for a new one")]
    Revoked { prefix: String, at: String },
    #[error(
        "token `{prefix}` was rotated and its grace window ended at {at}; use its replacement `{successor}`"
    )]
    RotatedOut { prefix: String, at: String, successor: String },
    #[error(
        "token `{prefix}` expired at {at}; create a new one with `spanblame token create` or rotate it before it expires"
    )]
    Expired { prefix: String, at: String },
}

/// Whether a token may be used at `now_unix_nanos`; `rfc3339` formats times for messages.
pub fn check_usable(
    prefix: &str,
    times: &TokenTimes,
    now_unix_nanos: u64,
    rfc3339: impl Fn(u64) -> String,
) -> Result<(), TokenRefusal> {
    let prefix = prefix.to_owned();
    if let Some(at) = times.revoked_unix_nanos.filter(|at| *at <= now_unix_nanos) {
        return Err(TokenRefusal::Revoked { prefix, at: rfc3339(at) });
    }
    if times.expires_unix_nanos <= now_unix_nanos {
        let at = rfc3339(times.expires_unix_nanos);
        return Err(match &times.superseded_by {
            Some(successor) => {
                TokenRefusal::RotatedOut { prefix, at, successor: successor.clone() }
            }
            None => TokenRefusal::Expired { prefix, at },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn generated_tokens_parse_to_their_prefix_and_digest() {
        let token = generate().unwrap();
        assert!(token.secret.starts_with(&format!("sbt_{}_", token.prefix)));
        assert_eq!(token.secret.len(), 4 + 8 + 1 + 43);
        let offered = parse(&token.secret).unwrap();
        assert_eq!(offered.prefix, token.prefix);
        assert!(digest_matches(&token.sha256, &offered.sha256));
        assert_ne!(generate().unwrap().secret, token.secret);
        assert!(!format!("{token:?}").contains(&token.secret));
    }

    #[test]
    fn foreign_and_damaged_tokens_do_not_parse() {
        let token = generate().unwrap().secret;
        for bad in [
            "",
            "s3cret-from-the-config",
            &token[..token.len() - 1],
            &token.replace("sbt_", "sbx_"),
            &format!("{token}A"),
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        let other = parse(&generate().unwrap().secret).unwrap();
        assert!(!digest_matches(&digest(&token), &other.sha256));
        assert!(!digest_matches(&[0; 16], &other.sha256));
    }

    #[test]
    fn usability_over_time() {
        let fmt = |t: u64| t.to_string();
        let live =
            TokenTimes { expires_unix_nanos: 100, revoked_unix_nanos: None, superseded_by: None };
        assert!(check_usable("p", &live, 99, fmt).is_ok());
        assert!(matches!(check_usable("p", &live, 100, fmt), Err(TokenRefusal::Expired { .. })));
        let revoked = TokenTimes { revoked_unix_nanos: Some(50), ..live.clone() };
        assert!(check_usable("p", &revoked, 49, fmt).is_ok());
        let refusal = check_usable("p", &revoked, 50, fmt).unwrap_err();
        assert_eq!(refusal.to_string(), "token `p` was revoked at 50; ask an admin for a new one");
        let rotated = TokenTimes { superseded_by: Some("q".into()), ..live };
        assert!(check_usable("p", &rotated, 99, fmt).is_ok());
        assert!(
            check_usable("p", &rotated, 100, fmt)
                .unwrap_err()
                .to_string()
                .contains("use its replacement `q`")
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in ".{0,80}") {
            let _ = parse(&text);
        }
    }
}
