//! Webhook authentication, per forge, on the raw bytes and before any JSON parsing: which
//! header carries the signature, which bytes it covers, and how it is compared (always in
//! constant time). Also the delivery key that makes redeliveries idempotent.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use model::ForgeKind;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Headers, WebhookError};

/// A delivery whose signature checked out: the JSON it carries (for form-encoded deliveries,
/// the decoded `payload` field), the event name and the key that identifies it across
/// redeliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub json: Vec<u8>,
    /// The forge's event name (`push`, `Merge Request Hook`, ...); Phabricator sends none and
    /// gets `herald`.
    pub event: String,
    /// Stable across redeliveries of the same delivery, and derived from signed content
    /// only (an unsigned delivery-id header could be changed to replay a delivery): the
    /// signed `webhook-id` of a Standard Webhooks signature, otherwise a hash of the signed
    /// bytes. Relayed deliveries ([`read_delivery`]) use the forge's delivery id.
    pub delivery_key: String,
    /// The signed `webhook-timestamp` of a Standard Webhooks delivery (Unix seconds), which
    /// the receiver checks against its clock so an old delivery cannot be replayed.
    pub signed_at_unix_secs: Option<u64>,
}

/// Checks a delivery's authenticity with the integration's `secret`.
///
/// - Gogs, Gitea, Forgejo: hex HMAC-SHA256 of the JSON payload, which in form mode is the
///   URL-decoded `payload` field, not the body as sent.
/// - GitHub: `sha256=` + hex HMAC-SHA256 of the body as sent.
/// - GitLab: `X-Gitlab-Token` is the secret itself, compared in constant time; or, when the
///   integration's secret is a signing token (`whsec_<base64 key>`), the Standard Webhooks
///   signature `webhook-signature: v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`.
/// - Phabricator: hex HMAC-SHA256 of the body with the hook's HMAC key.
///
/// An empty secret is refused outright: forges send an empty signature when they have none,
/// and an empty key would make every such delivery "valid".
pub fn verify(
    kind: ForgeKind,
    secret: &[u8],
    headers: &Headers,
    body: &[u8],
) -> Result<Verified, WebhookError> {
    if secret.is_empty() {
        return Err(WebhookError::NoSecret);
    }
    let mut signed_id = None;
    match kind {
        ForgeKind::Gogs | ForgeKind::Gitea => {
            let (header, signature) = gogs_family_signature(kind, headers)?;
            check_hmac_hex(secret, &json_payload(headers, body)?, signature, header)?;
        }
        ForgeKind::Github => {
            let header = "X-Hub-Signature-256";
            let signature = required(headers, header)?;
            let hex = signature
                .strip_prefix("sha256=")
                .ok_or(WebhookError::BadSignature { header, reason: "expected `sha256=<hex>`" })?;
            check_hmac_hex(secret, body, hex, header)?;
        }
        ForgeKind::Gitlab => match secret.strip_prefix(SIGNING_TOKEN_PREFIX) {
            Some(key) => signed_id = Some(check_standard_webhook(key, headers, body)?),
            None => {
                let header = "X-Gitlab-Token";
                let token = required(headers, header)?;
                if !bool::from(token.as_bytes().ct_eq(secret)) {
                    return Err(WebhookError::BadSignature {
                        header,
                        reason: "does not match the integration's secret",
                    });
                }
            }
        },
        ForgeKind::Phabricator => {
            let header = "X-Phabricator-Webhook-Signature";
            check_hmac_hex(secret, body, required(headers, header)?, header)?;
        }
    }
    let mut verified = read_delivery(kind, headers, body)?;
    match signed_id {
        Some((id, timestamp)) => {
            verified.delivery_key = format!("{kind}:{id}");
            verified.signed_at_unix_secs = Some(timestamp);
        }
        // The signed bytes (for Gogs and Gitea, the JSON payload the signature covers).
        None => verified.delivery_key = body_key(kind, verified.signed_bytes(kind, body)),
    }
    Ok(verified)
}

impl Verified {
    /// The bytes a forge's signature covers: the JSON payload for Gogs and Gitea (a form
    /// body's `payload` field), the body as sent for the others.
    fn signed_bytes<'a>(&'a self, kind: ForgeKind, body: &'a [u8]) -> &'a [u8] {
        match kind {
            ForgeKind::Gogs | ForgeKind::Gitea => &self.json,
            _ => body,
        }
    }
}

/// A delivery relayed by a caller spanblame already authenticated (a token with the
/// `webhook` scope), so no forge signature is checked: the same JSON, event and delivery key
/// as [`verify`] gives for a signed delivery.
pub fn read_delivery(
    kind: ForgeKind,
    headers: &Headers,
    body: &[u8],
) -> Result<Verified, WebhookError> {
    match kind {
        ForgeKind::Gogs | ForgeKind::Gitea => {
            let json = json_payload(headers, body)?;
            let event = gogs_family_event(kind, headers)?;
            // Gogs keeps its delivery id on redelivery; Gitea and Forgejo "replay" under a new
            // id with the same bytes, so for them only a hash of the signed bytes is stable.
            let delivery_key = match (kind, headers.get("x-gogs-delivery")) {
                (ForgeKind::Gogs, Some(id)) if !id.is_empty() => format!("gogs:{id}"),
                _ => body_key(kind, &json),
            };
            Ok(Verified { json, event, delivery_key, signed_at_unix_secs: None })
        }
        ForgeKind::Github => {
            let json = json_payload(headers, body)?;
            let event = required(headers, "X-GitHub-Event")?.to_owned();
            let delivery_key = match headers.get("x-github-delivery") {
                Some(id) if !id.is_empty() => format!("github:{id}"),
                _ => body_key(kind, body),
            };
            Ok(Verified { json, event, delivery_key, signed_at_unix_secs: None })
        }
        ForgeKind::Gitlab => {
            let json = json_payload(headers, body)?;
            let event = required(headers, "X-Gitlab-Event")?.to_owned();
            // `Idempotency-Key` is stable across retries (GitLab 17.4+); older GitLab sends
            // only per-request ids, so fall back to the body.
            let delivery_key = match headers.get("idempotency-key") {
                Some(id) if !id.is_empty() => format!("gitlab:{id}"),
                _ => body_key(kind, body),
            };
            Ok(Verified { json, event, delivery_key, signed_at_unix_secs: None })
        }
        // Herald retries with identical bytes and sends no id at all.
        ForgeKind::Phabricator => Ok(Verified {
            json: body.to_vec(),
            event: "herald".to_owned(),
            delivery_key: body_key(kind, body),
            signed_at_unix_secs: None,
        }),
    }
}

fn required<'h>(headers: &'h Headers, name: &'static str) -> Result<&'h str, WebhookError> {
    match headers.get(name) {
        Some(value) if !value.trim().is_empty() => Ok(value.trim()),
        _ => Err(WebhookError::MissingHeader { header: name }),
    }
}

/// Forgejo sends its own header and every Gitea one; Gitea sends Gogs' too. The signature
/// values are identical, so the most specific header present is used.
fn gogs_family_signature(
    kind: ForgeKind,
    headers: &Headers,
) -> Result<(&'static str, &str), WebhookError> {
    let candidates: &[&'static str] = match kind {
        ForgeKind::Gogs => &["X-Gogs-Signature"],
        _ => &["X-Forgejo-Signature", "X-Gitea-Signature"],
    };
    for &header in candidates {
        if let Some(value) = headers.get(header).filter(|v| !v.trim().is_empty()) {
            return Ok((header, value.trim()));
        }
    }
    Err(WebhookError::MissingHeader { header: candidates[candidates.len() - 1] })
}

fn gogs_family_event(kind: ForgeKind, headers: &Headers) -> Result<String, WebhookError> {
    let candidates: &[&'static str] = match kind {
        ForgeKind::Gogs => &["X-Gogs-Event"],
        _ => &["X-Forgejo-Event", "X-Gitea-Event"],
    };
    candidates
        .iter()
        .find_map(|header| headers.get(header).filter(|v| !v.is_empty()))
        .map(str::to_owned)
        .ok_or(WebhookError::MissingHeader { header: candidates[candidates.len() - 1] })
}

/// The JSON a delivery carries: the body itself, or for `application/x-www-form-urlencoded`
/// deliveries the URL-decoded `payload` field.
fn json_payload(headers: &Headers, body: &[u8]) -> Result<Vec<u8>, WebhookError> {
    let content_type = headers.get("content-type").unwrap_or("application/json");
    let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match media_type.as_str() {
        "application/x-www-form-urlencoded" => form_field(body, b"payload")
            .ok_or(WebhookError::Malformed { reason: "form body has no `payload` field".into() }),
        "application/json" | "" => Ok(body.to_vec()),
        _ => Err(WebhookError::UnsupportedContentType { content_type: content_type.to_owned() }),
    }
}

/// Decodes the first `name=value` pair of a form body.
pub(crate) fn form_field(body: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let mut parts = pair.splitn(2, |&b| b == b'=');
        let key = parts.next()?;
        let value = parts.next().unwrap_or(b"");
        (percent_decode(key).as_deref() == Some(name)).then(|| percent_decode(value))?
    })
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
pub(crate) fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex_value(*bytes.next()?)?;
                let lo = hex_value(*bytes.next()?)?;
                out.push(hi << 4 | lo);
            }
            _ => out.push(b),
        }
    }
    Some(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(hex_value(pair[0])? << 4 | hex_value(pair[1])?))
        .collect()
}

/// Compares `HMAC-SHA256(secret, message)` with a hex signature (either case) in constant time.
fn check_hmac_hex(
    secret: &[u8],
    message: &[u8],
    signature_hex: &str,
    header: &'static str,
) -> Result<(), WebhookError> {
    let expected = decode_hex(signature_hex)
        .filter(|bytes| bytes.len() == 32)
        .ok_or(WebhookError::BadSignature { header, reason: "not 64 hex digits" })?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key size");
    mac.update(message);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected).map_err(|_| WebhookError::BadSignature {
        header,
        reason: "does not match the body signed with the integration's secret",
    })
}

/// How a Standard Webhooks signing token (GitLab's "signing token") starts.
pub const SIGNING_TOKEN_PREFIX: &[u8] = b"whsec_";

/// Standard Webhooks, as GitLab's signing token uses it: the key is the base64 after
/// `whsec_`; `webhook-signature` lists space-separated `v1,<base64 HMAC-SHA256>` values over
/// `"{webhook-id}.{webhook-timestamp}.{body}"`, any of which may match. Returns the signed
/// id and timestamp: the id keys the delivery (a replay keeps it), and the receiver checks
/// the timestamp against its clock.
fn check_standard_webhook(
    key_base64: &[u8],
    headers: &Headers,
    body: &[u8],
) -> Result<(String, u64), WebhookError> {
    let header = "webhook-signature";
    let key = BASE64.decode(key_base64).map_err(|_| WebhookError::BadSignature {
        header,
        reason: "cannot be checked: the integration's signing token is not `whsec_<base64>`",
    })?;
    let signatures = required(headers, header)?;
    let id = required(headers, "webhook-id")?;
    let timestamp = required(headers, "webhook-timestamp")?;
    let expected = standard_webhook_mac(&key, id, timestamp, body);
    let matches = signatures
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|signature| BASE64.decode(signature).ok())
        .any(|signature| bool::from(signature.as_slice().ct_eq(expected.as_slice())));
    if !matches {
        return Err(WebhookError::BadSignature {
            header,
            reason: "has no `v1,` signature matching the body signed with the integration's signing token",
        });
    }
    let timestamp = timestamp.parse::<u64>().map_err(|_| WebhookError::BadSignature {
        header: "webhook-timestamp",
        reason: "is not whole seconds since 1970",
    })?;
    Ok((id.to_owned(), timestamp))
}

/// The `v1,<base64>` Standard Webhooks signature (used by tests and the delivery tools).
pub fn standard_webhook_signature(
    key_base64: &str,
    id: &str,
    timestamp: &str,
    body: &[u8],
) -> Option<String> {
    let key = BASE64.decode(key_base64).ok()?;
    Some(format!("v1,{}", BASE64.encode(standard_webhook_mac(&key, id, timestamp, body))))
}

/// HMAC-SHA256 over `"{id}.{timestamp}.{body}"`, what a Standard Webhooks `v1` signature is.
fn standard_webhook_mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key size");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Lowercase hex HMAC-SHA256, as the forges send it (used by tests and the delivery tools).
pub fn hmac_sha256_hex(secret: &[u8], message: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key size");
    mac.update(message);
    hex(&mac.finalize().into_bytes())
}

fn body_key(kind: ForgeKind, bytes: &[u8]) -> String {
    format!("{kind}:sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
