//! What spanblame shows, as values: the use cases every outlet reads (the JSON API, the web
//! pages, notifications and MCP). Each view is built from the store, the change graph (the
//! configured repositories, their mirrors and the recorded commits and reviews) and the
//! caller's [`Visibility`], and answers a type of the `shapes` crate: the JSON API
//! serialises it, and pages, notifications and MCP read its fields.
//!
//! - `traces`: a trace by id (other teams' spans redacted), trace search, the service catalog;
//! - `deploys`: deploys with their predecessor and commit range, and a commit's forward impact;
//! - `findings`: findings in lists and in full;
//! - `incidents`: a deploy's regressed findings as one incident, with one status;
//! - `dora`: the four keys over a window of deploys;
//! - `graph`: the service graph of the last minutes (span metrics), with open incidents;
//! - `gate`: the tagging gate's facts (commit, review, mapping, the spans' versions) and report;
//! - `notifications`: the outbox's rows as the notifications API shows them;
//! - `changes`: the change context of a span (`{version, commit, review, blame, owner}`);
//! - `blame`: the most recent change to the code a span runs, at the span's version;
//! - `ranges`: a deploy's exact commit range, read from its mirror;
//! - `sketches`: per-minute latency and error numbers for pages, within the caller's reach;
//! - `settings` and `mirrors`: the change graph's configuration and the mirrors ready to read.
//!
//! May depend on: `model`, `analysis`, `auth` (the `Visibility` type), `forge` (URL forms),
//! `mirror`, `store` and `shapes`.
//! **Never:** HTTP, templates, a runtime, or sending anything anywhere; nothing here writes
//! but `changes::resolve_commit`'s recording of one commit read from a mirror.

pub mod blame;
pub mod changes;
pub mod deploys;
pub mod dora;
pub mod duration;
pub mod findings;
pub mod gate;
pub mod graph;
pub mod incidents;
pub mod mirrors;
pub mod notifications;
pub mod ranges;
pub mod settings;
pub mod sketches;
pub mod traces;

use std::sync::{Arc, OnceLock};

pub use auth::Visibility;
use store::SpanStore;
/// The store's vocabulary the views take and return (queries, rows, errors), so outlets
/// need not depend on the store itself.
pub use store::{FindingFilter, FindingStatus, SketchQuery, SketchRow, SpanQuery, StoreError};

pub use duration::{DurationError, parse_duration_nanos};
pub use mirrors::{MirrorSettings, MirrorSource, Mirrors};
pub use settings::{
    ChangeSettings, DeployTrigger, Integration, RepositorySettings, ServiceOwnership,
};

/// What every view is built from: the store, the change graph's configuration and mirrors,
/// the time, and where people reach this server.
pub struct Context {
    pub store: Arc<SpanStore>,
    pub changes: ChangeSettings,
    pub mirrors: Mirrors,
    pub clock: Arc<dyn Clock>,
    /// `server.public_url`, when configured.
    pub configured_url: Option<String>,
    /// `http://` + the main address once bound (when `public_url` is not configured).
    pub bound_url: OnceLock<String>,
    /// Blames already computed, by repository, commit and code location.
    pub blames: blame::BlameCache,
    /// Minor regressions join incidents (and so alerts, comments and DORA's failures).
    pub minor_incidents: bool,
    /// Span metrics and the service graph of what this server ingested, when enabled
    /// (`[span_metrics]`): ingest adds to them, `/metrics/spans` and `graph` read them.
    pub span_metrics: Option<std::sync::Mutex<analysis::span_metrics::SpanMetrics>>,
}

impl Context {
    pub fn new(
        store: Arc<SpanStore>,
        changes: ChangeSettings,
        clock: Arc<dyn Clock>,
        configured_url: Option<String>,
    ) -> Context {
        Context {
            store,
            changes,
            mirrors: Mirrors::default(),
            clock,
            configured_url,
            bound_url: OnceLock::new(),
            blames: blame::BlameCache::default(),
            minor_incidents: false,
            span_metrics: None,
        }
    }

    /// The severity an incident's regressions have: `major` only, unless minor ones join.
    pub fn incident_severity(&self) -> Option<String> {
        (!self.minor_incidents).then(|| "major".to_owned())
    }

    /// Where people and forges reach this server: `server.public_url`, else the bound address.
    pub fn public_url(&self) -> Option<&str> {
        self.configured_url.as_deref().or(self.bound_url.get().map(String::as_str))
    }
}

/// A request a view cannot answer as asked: the message names the parameter and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub message: String,
}

impl Invalid {
    pub fn new(message: impl Into<String>) -> Invalid {
        Invalid { message: message.into() }
    }
}

/// The caller's reach as the store's filters take it: allowed services and environments.
pub fn reach(visibility: &Visibility) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let list = |set: &Option<std::collections::BTreeSet<String>>| {
        set.as_ref().map(|s| s.iter().cloned().collect())
    };
    (list(&visibility.services), list(&visibility.environments))
}

/// A time as the API writes it (RFC 3339, UTC, nanoseconds when there are any).
pub fn rfc3339(unix_nanos: u64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(unix_nanos))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// An RFC 3339 query parameter as Unix nanoseconds.
pub fn parse_time(key: &str, value: &str) -> Result<u64, Invalid> {
    let timestamp: jiff::Timestamp = value.parse().map_err(|e| {
        Invalid::new(format!(
            "`{key}` must be an RFC 3339 time such as `2026-11-21T10:00:00Z`: {e}"
        ))
    })?;
    u64::try_from(timestamp.as_nanosecond())
        .map_err(|_| Invalid::new(format!("`{key}` is before 1970")))
}

/// The source of "now" for everything time-dependent in the server.
pub trait Clock: Send + Sync {
    fn now_unix_nanos(&self) -> u64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_nanos(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }
}
