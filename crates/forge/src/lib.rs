//! Forge webhooks and APIs: what Gogs, Gitea/Forgejo, GitHub, GitLab and Phabricator/Phorge
//! send, and how spanblame checks and reads it.
//!
//! A webhook goes through two steps, in this order:
//! 1. [`verify`] authenticates the raw bytes with the integration's secret, each forge by its
//!    own rule (which header, which bytes, HMAC or plain token), in constant time, and yields
//!    the JSON together with the event name and a delivery key for idempotency. Nothing is
//!    parsed before this succeeds.
//! 2. [`parse`] turns the verified JSON into a [`WebhookEvent`]: a push with its commits, a
//!    review with its state and commits, a deploy (a deployment that succeeded, a published
//!    release), a ping, a Phabricator pointer (Herald sends only PHIDs, for the caller to fetch
//!    through Conduit), or an event spanblame ignores (and why).
//!
//! A Herald pointer is followed through [`conduit`], whose requests and answers are pure
//! values too; so are [`api`]'s comments and statuses and [`revert`]'s Conduit calls that
//! propose a revert as a new revision.
//!
//! All of these are pure functions of their inputs, so the fixtures in `test_data/forges/` (real
//! payloads, see its README) are the test suite; the server adds storage and HTTP around them.
//!
//! **Architecture Invariant:** only this crate knows forge payload formats. It knows nothing
//! of storage; what it extracts is expressed in `model` types.
//!
//! May depend on: `model`, HMAC and JSON crates. **Never:** IO: it parses, verifies and builds
//! requests as values; the server and the jobs send them.

pub mod api;
pub mod conduit;
mod delivery;
mod deploys;
mod parse;
mod payload;
pub mod revert;
mod verify;

pub use delivery::signed_delivery;
pub use deploys::{DeployEvent, DeployEventKind};
pub use parse::{HeraldPointer, Push, ReviewEvent, WebhookEvent, parse};
pub use payload::Repository;
pub use verify::{
    SIGNING_TOKEN_PREFIX, Verified, hmac_sha256_hex, read_delivery, standard_webhook_signature,
    verify,
};

/// Request headers with case-insensitive names, as the HTTP layer received them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    pub fn insert(&mut self, name: &str, value: &str) {
        self.entries.push((name.to_ascii_lowercase(), value.to_owned()));
    }

    /// The first value of `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for Headers {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> Headers {
        let mut headers = Headers::new();
        for (name, value) in iter {
            headers.insert(name, value);
        }
        headers
    }
}

/// Why a webhook delivery was refused. [`WebhookError::is_authentication`] tells 401s from 400s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the integration has no secret configured, so no delivery can be verified")]
    NoSecret,
    #[error("missing `{header}` header: set the webhook's secret on the forge")]
    MissingHeader { header: &'static str },
    #[error("`{header}` {reason}: check that the webhook's secret matches the integration's")]
    BadSignature { header: &'static str, reason: &'static str },
    #[error(
        "content type `{content_type}` is not supported: use `application/json` (or `application/x-www-form-urlencoded`)"
    )]
    UnsupportedContentType { content_type: String },
    #[error("malformed webhook body: {reason}")]
    Malformed { reason: String },
    #[error("webhook body lacks required field `{field}`")]
    MissingField { field: &'static str },
}

impl WebhookError {
    /// The delivery could not be authenticated (as opposed to being unreadable).
    pub fn is_authentication(&self) -> bool {
        matches!(
            self,
            WebhookError::NoSecret
                | WebhookError::MissingHeader { .. }
                | WebhookError::BadSignature { .. }
        )
    }
}

#[cfg(test)]
mod tests;
