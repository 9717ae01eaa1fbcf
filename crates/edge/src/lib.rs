//! What every route of spanblame's network edge shares, below the route table:
//! - `access`: every request's gate: who is calling (tokens, JWTs and key sets, proxy
//!   assertions, sessions), whether they may (`auth::authorize`), the audit record, CSRF,
//!   rate limits and security headers; [`Guard`] holds what it needs;
//! - `sign_in`: OIDC sign-in and sessions (`/auth/login`, `/auth/callback`, `/auth/me`,
//!   `/auth/logout`);
//! - `error`: the one error type leaving a handler, in JSON, as an HTML page, and in OTLP's
//!   shape;
//! - `listen`: serving a listener (connection cap, header and first-byte deadlines, graceful
//!   shutdown);
//! - `metrics`: the server's own series (`/metrics`).
//!
//! May depend on: `auth`, `otlp` (its error status), `store`, `views` and `jobs` (the
//! store, the clock and the HTTP client the guard reads through them), `web` (error pages),
//! `compat` (its errors, as API errors).
//! **Never:** a route of its own besides sign-in's handlers, or anything about spans,
//! deploys or findings; `server` holds the route table and every other handler. This file is
//! the crate's assembly: its modules, and the [`Guard`] they all read (modules may import it).

pub mod access;
pub mod error;
pub mod listen;
pub mod metrics;
pub mod sign_in;

pub use access::{Caller, RouteSpec};
pub use error::{ApiError, ErrorCode};

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store::NewAuditRecord;

use access::{AccessSettings, AuthMode, Discovery, KeySource};

/// A server's shared state, which holds the guard: what sign-in's handlers are given.
pub trait Guarded: Send + Sync + 'static {
    fn guard(&self) -> &Guard;
}

/// What the guard decides with: the access settings and policy, what it reads through the
/// jobs (the store, the clock, the HTTP client, token use), and its runtime state (key sets,
/// the OIDC discovery document, rate limits, refusals being recorded).
pub struct Guard {
    pub settings: AccessSettings,
    /// What the authorization decision needs besides the caller.
    pub policy: auth::Policy,
    pub jobs: Arc<jobs::Jobs>,
    pub oidc_keys: Option<KeySource>,
    pub oidc_discovery: tokio::sync::Mutex<Option<Discovery>>,
    pub proxy_keys: Option<KeySource>,
    limiter: Mutex<HashMap<IpAddr, (f64, Instant)>>,
    /// Per client address: the minute of its refusals being recorded, how many were recorded
    /// one by one in it, and how many more were only counted.
    refusals: Mutex<HashMap<IpAddr, RefusalWindow>>,
    /// Audit records appended, and appends that failed (the caller then got 503).
    pub audit_records_total: AtomicU64,
    pub audit_failures_total: AtomicU64,
}

/// Refusals recorded one by one per client address and minute; the rest are counted and
/// recorded as one summary, so a flood of bad requests cannot flood the audit log.
const REFUSALS_RECORDED_PER_MINUTE: u32 = 10;

#[derive(Debug, Clone, Copy)]
struct RefusalWindow {
    start_unix_nanos: u64,
    recorded: u32,
    suppressed: u64,
}

impl Guard {
    pub fn new(settings: AccessSettings, policy: auth::Policy, jobs: Arc<jobs::Jobs>) -> Guard {
        let (oidc_keys, proxy_keys) = match &settings.mode {
            AuthMode::None => (None, None),
            AuthMode::Oidc(_) => (Some(KeySource::new(None)), None),
            AuthMode::Proxy(proxy) => (None, Some(KeySource::new(Some(proxy.jwks_url.clone())))),
        };
        Guard {
            settings,
            policy,
            jobs,
            oidc_keys,
            oidc_discovery: tokio::sync::Mutex::new(None),
            proxy_keys,
            limiter: Mutex::new(HashMap::new()),
            refusals: Mutex::new(HashMap::new()),
            audit_records_total: AtomicU64::new(0),
            audit_failures_total: AtomicU64::new(0),
        }
    }

    /// What the views read: the store, the change graph, the clock.
    pub fn ctx(&self) -> &views::Context {
        &self.jobs.ctx
    }

    /// Where people and forges reach this server: `server.public_url`, else the bound address.
    pub fn public_url(&self) -> Option<&str> {
        self.ctx().public_url()
    }

    /// A token bucket per client address: `per_minute` requests, refilled continuously.
    /// The audit records for a refusal from `addr`: itself while the address is under its
    /// per-minute allowance, nothing beyond it, and a summary of what was suppressed once a
    /// new minute begins.
    fn refusal_records(&self, addr: Option<IpAddr>, record: NewAuditRecord) -> Vec<NewAuditRecord> {
        const MINUTE_NANOS: u64 = 60 * 1_000_000_000;
        let Some(addr) = addr else { return vec![record] };
        let now = record.time_unix_nanos;
        let mut windows = lock(&self.refusals);
        if windows.len() > 100_000 {
            windows.retain(|_, w| now.saturating_sub(w.start_unix_nanos) < MINUTE_NANOS);
        }
        let window = windows.entry(addr).or_insert(RefusalWindow {
            start_unix_nanos: now,
            recorded: 0,
            suppressed: 0,
        });
        let mut records = Vec::new();
        if now.saturating_sub(window.start_unix_nanos) >= MINUTE_NANOS {
            if window.suppressed > 0 {
                records.push(NewAuditRecord {
                    action: "refusals.suppressed".to_owned(),
                    resource: String::new(),
                    outcome: format!(
                        "refused {} more requests from this address in the minute from {} (beyond {REFUSALS_RECORDED_PER_MINUTE} a minute, counted, not recorded one by one)",
                        window.suppressed,
                        views::rfc3339(window.start_unix_nanos)
                    ),
                    principal: "anonymous".to_owned(),
                    ..record.clone()
                });
            }
            *window = RefusalWindow { start_unix_nanos: now, recorded: 0, suppressed: 0 };
        }
        if window.recorded < REFUSALS_RECORDED_PER_MINUTE {
            window.recorded += 1;
            records.push(record);
        } else {
            window.suppressed += 1;
        }
        records
    }

    fn admit(&self, addr: IpAddr, per_minute: u32) -> bool {
        let capacity = f64::from(per_minute.max(1));
        let mut buckets = lock(&self.limiter);
        if buckets.len() > 100_000 {
            buckets.retain(|_, (_, at)| at.elapsed() < Duration::from_secs(60));
        }
        let (tokens, at) = buckets.entry(addr).or_insert((capacity, Instant::now()));
        *tokens = (*tokens + at.elapsed().as_secs_f64() * capacity / 60.0).min(capacity);
        *at = Instant::now();
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // INVARIANT: nothing panics while holding these locks except on a bug; keep serving.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
