//! JWT verification for OIDC ID and access tokens and identity-aware-proxy assertions.
//!
//! Only asymmetric algorithms are accepted (RSA, RSA-PSS, ECDSA, EdDSA): `alg: none` and
//! HMAC (which would let anyone holding the public key forge tokens) are refused before any
//! key is looked at. The key comes from the issuer's JWKS by `kid`; an unknown `kid` is
//! reported as [`JwtError::UnknownKey`] so the caller can fetch the key set again (rotation).
//! Issuer, audience, expiry and not-before are checked here against the caller's clock with a
//! stated leeway, so tests can move time.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// An issuer's public keys (its JWKS document).
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: JwkSet,
}

impl KeySet {
    pub fn from_json(bytes: &[u8]) -> Result<KeySet, JwtError> {
        let keys: JwkSet = serde_json::from_slice(bytes)
            .map_err(|e| JwtError::BadKeySet(format!("not a JWKS document: {e}")))?;
        Ok(KeySet { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.keys.is_empty()
    }

    fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, JwtError> {
        let signing = |jwk: &&jsonwebtoken::jwk::Jwk| {
            !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption))
        };
        let jwk = match kid {
            Some(kid) => self.keys.find(kid).filter(signing),
            // Without a `kid`, only an unambiguous key set is usable.
            None => match self.keys.keys.iter().filter(signing).collect::<Vec<_>>()[..] {
                [only] => Some(only),
                _ => None,
            },
        }
        .ok_or_else(|| JwtError::UnknownKey { kid: kid.unwrap_or("").to_owned() })?;
        if let Some(key_alg) = jwk.common.key_algorithm
            && key_alg.to_string() != format!("{alg:?}")
        {
            return Err(JwtError::AlgorithmMismatch {
                alg: format!("{alg:?}"),
                key_alg: key_alg.to_string(),
            });
        }
        DecodingKey::from_jwk(jwk)
            .map_err(|e| JwtError::BadKeySet(format!("key `{}`: {e}", kid.unwrap_or(""))))
    }
}

/// What a valid token must say.
#[derive(Debug, Clone)]
pub struct Expectations {
    pub issuer: String,
    /// The token's `aud` must contain one of these.
    pub audiences: Vec<String>,
    /// Clock-skew tolerance for `exp`, `nbf` and `iat`.
    pub leeway_secs: u64,
}

/// A verified token's claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub subject: String,
    pub expires_unix_secs: u64,
    pub all: Map<String, Value>,
}

impl Claims {
    pub fn string(&self, name: &str) -> Option<&str> {
        self.all.get(name).and_then(Value::as_str)
    }

    /// A claim holding a list of strings (or one string, or a space-separated string, as
    /// some providers send groups and scopes).
    pub fn strings(&self, name: &str) -> Vec<String> {
        match self.all.get(name) {
            Some(Value::Array(items)) => {
                items.iter().filter_map(Value::as_str).map(str::to_owned).collect()
            }
            Some(Value::String(text)) => text.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is not a JWT (three base64url parts with a JSON header)")]
    Malformed,
    #[error(
        "the token's algorithm `{0}` is not accepted; only signed tokens (RS*, PS*, ES*, EdDSA) are"
    )]
    UnsupportedAlgorithm(String),
    #[error("no key `{kid}` in the issuer's key set")]
    UnknownKey { kid: String },
    #[error("the token's algorithm `{alg}` does not match its key's `{key_alg}`")]
    AlgorithmMismatch { alg: String, key_alg: String },
    #[error("the issuer's key set is unusable: {0}")]
    BadKeySet(String),
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token was issued by `{found}`, not `{expected}`")]
    WrongIssuer { found: String, expected: String },
    #[error("the token is for audience {found}, not {expected}")]
    WrongAudience { found: String, expected: String },
    #[error("the token expired at unix time {expires_unix_secs}")]
    Expired { expires_unix_secs: u64 },
    #[error("the token is not valid before unix time {not_before_unix_secs}")]
    NotYetValid { not_before_unix_secs: u64 },
    #[error("the token has no `{0}` claim")]
    MissingClaim(&'static str),
}

const ACCEPTED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The `alg` and `kid` of a token's header, read without trusting anything.
fn header(token: &str) -> Result<(Algorithm, Option<String>), JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| JwtError::Malformed)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)?;
    let alg = header.get("alg").and_then(Value::as_str).ok_or(JwtError::Malformed)?;
    let parsed = alg
        .parse::<Algorithm>()
        .ok()
        .filter(|a| ACCEPTED.contains(a))
        .ok_or_else(|| JwtError::UnsupportedAlgorithm(alg.to_owned()))?;
    Ok((parsed, header.get("kid").and_then(Value::as_str).map(str::to_owned)))
}

/// Verifies `token`'s signature with `keys` and its claims against `expect` at `now_unix_secs`.
pub fn verify(
    token: &str,
    keys: &KeySet,
    expect: &Expectations,
    now_unix_secs: u64,
) -> Result<Claims, JwtError> {
    let (alg, kid) = header(token.trim())?;
    let key = keys.key_for(kid.as_deref(), alg)?;
    // The signature only; claims are checked below against the injected clock.
    let mut validation = Validation::new(alg);
    validation.required_spec_claims = HashSet::new();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<Map<String, Value>>(token.trim(), &key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => JwtError::BadSignature,
            _ => JwtError::Malformed,
        })?;
    let all = data.claims;
    let number = |name: &str| all.get(name).and_then(Value::as_f64).map(|n| n.max(0.0) as u64);

    let issuer = all.get("iss").and_then(Value::as_str).ok_or(JwtError::MissingClaim("iss"))?;
    if issuer.trim_end_matches('/') != expect.issuer.trim_end_matches('/') {
        return Err(JwtError::WrongIssuer {
            found: issuer.to_owned(),
            expected: expect.issuer.clone(),
        });
    }
    let audiences: Vec<&str> = match all.get("aud") {
        Some(Value::String(aud)) => vec![aud],
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).collect(),
        _ => return Err(JwtError::MissingClaim("aud")),
    };
    if !audiences.iter().any(|aud| expect.audiences.iter().any(|e| e == aud)) {
        return Err(JwtError::WrongAudience {
            found: format!("{audiences:?}"),
            expected: format!("{:?}", expect.audiences),
        });
    }
    let expires_unix_secs = number("exp").ok_or(JwtError::MissingClaim("exp"))?;
    if expires_unix_secs.saturating_add(expect.leeway_secs) <= now_unix_secs {
        return Err(JwtError::Expired { expires_unix_secs });
    }
    if let Some(not_before_unix_secs) = number("nbf")
        && not_before_unix_secs > now_unix_secs.saturating_add(expect.leeway_secs)
    {
        return Err(JwtError::NotYetValid { not_before_unix_secs });
    }
    if let Some(issued_unix_secs) = number("iat")
        && issued_unix_secs > now_unix_secs.saturating_add(expect.leeway_secs)
    {
        return Err(JwtError::NotYetValid { not_before_unix_secs: issued_unix_secs });
    }
    let subject = all.get("sub").and_then(Value::as_str).ok_or(JwtError::MissingClaim("sub"))?;
    Ok(Claims { subject: subject.to_owned(), expires_unix_secs, all })
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    // The Ed25519 test key of RFC 8037 appendix A.1: the private key as PKCS#8 DER in
    // base64, and the public `x`.
    const ED_PRIVATE_PKCS8: &str =
        "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g";
    const ED_PUBLIC_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn keys(kid: &str) -> KeySet {
        let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": ED_PUBLIC_X, "kid": kid, "alg": "EdDSA", "use": "sig"}]});
        KeySet::from_json(jwks.to_string().as_bytes()).unwrap()
    }

    fn expect() -> Expectations {
        Expectations {
            issuer: "https://idp.example.test".into(),
            audiences: vec!["spanblame".into()],
            leeway_secs: 60,
        }
    }

    fn sign(claims: Value, kid: &str) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.into());
        let der = base64::engine::general_purpose::STANDARD.decode(ED_PRIVATE_PKCS8).unwrap();
        let key = EncodingKey::from_ed_der(&der);
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    fn claims() -> Value {
        json!({"iss": "https://idp.example.test", "aud": ["spanblame", "other"], "sub": "alice",
               "exp": 2_000, "iat": 1_000, "groups": ["payments-eng"]})
    }

    #[test]
    fn accepts_a_valid_token_within_the_leeway() {
        let token = sign(claims(), "k1");
        let verified = verify(&token, &keys("k1"), &expect(), 1_500).unwrap();
        assert_eq!(verified.subject, "alice");
        assert_eq!(verified.strings("groups"), ["payments-eng"]);
        assert!(verify(&token, &keys("k1"), &expect(), 2_059).is_ok());
        assert!(verify(&token, &keys("k1"), &expect(), 941).is_ok());
    }

    #[test]
    fn refuses_what_it_must() {
        let at = 1_500;
        let check = |token: &str, keys: &KeySet| verify(token, keys, &expect(), at);
        let mut wrong_aud = claims();
        wrong_aud["aud"] = json!("someone-else");
        assert!(matches!(
            check(&sign(wrong_aud, "k1"), &keys("k1")),
            Err(JwtError::WrongAudience { .. })
        ));
        let mut wrong_iss = claims();
        wrong_iss["iss"] = json!("https://evil.example.test");
        assert!(matches!(
            check(&sign(wrong_iss, "k1"), &keys("k1")),
            Err(JwtError::WrongIssuer { .. })
        ));
        assert_eq!(
            verify(&sign(claims(), "k1"), &keys("k1"), &expect(), 2_060),
            Err(JwtError::Expired { expires_unix_secs: 2_000 })
        );
        assert!(matches!(
            check(&sign(claims(), "k2"), &keys("k1")),
            Err(JwtError::UnknownKey { .. })
        ));
        let mut no_exp = claims();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(check(&sign(no_exp, "k1"), &keys("k1")), Err(JwtError::MissingClaim("exp")));

        // `alg: none`, HMAC, and a tampered payload.
        let body = URL_SAFE_NO_PAD.encode(claims().to_string());
        let none = format!("{}.{body}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#));
        assert_eq!(check(&none, &keys("k1")), Err(JwtError::UnsupportedAlgorithm("none".into())));
        let hs = jsonwebtoken::encode(
            &Header { kid: Some("k1".into()), ..Header::new(Algorithm::HS256) },
            &claims(),
            &EncodingKey::from_secret(ED_PUBLIC_X.as_bytes()),
        )
        .unwrap();
        assert_eq!(check(&hs, &keys("k1")), Err(JwtError::UnsupportedAlgorithm("HS256".into())));
        let token = sign(claims(), "k1");
        let parts: Vec<&str> = token.split('.').collect();
        let mut forged = claims();
        forged["sub"] = json!("mallory");
        let tampered =
            format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(forged.to_string()), parts[2]);
        assert_eq!(check(&tampered, &keys("k1")), Err(JwtError::BadSignature));
        assert_eq!(check("not a token", &keys("k1")), Err(JwtError::Malformed));
    }

    proptest! {
        #[test]
        fn verify_never_panics(token in "[A-Za-z0-9_.-]{0,200}") {
            let _ = verify(&token, &keys("k1"), &expect(), 0);
        }
    }
}
