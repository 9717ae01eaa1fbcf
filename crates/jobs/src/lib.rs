//! Everything spanblame does on its own, on a timer or under the background lease: detection
//! and explanation (`detection`, `evidence`, `suspects`: verdicts per look, trace samples,
//! ranked suspects and the rollback draft), notifications (`notify`: deciding what to
//! announce into the outbox, the message texts, and the delivery job), the tagging gate's
//! answers on the forge (`gate`: Harbormaster build results through the outbox), deploys a
//! forge reports (`forge_deploys`: deployments and releases to the services they deploy),
//! proposed reverts (`revert`: made in the mirror, opened on the forge through the outbox),
//! mirrors (`mirrors`:
//! clone and fetch, history import), upkeep (`maintenance`: sealing, compaction, retention,
//! token use), and the lease itself (`lease`). `outbound` is the one HTTP client for forge
//! APIs and receivers.
//!
//! Time comes from the views' [`views::Context`] clock, so tests drive every job minute by
//! minute.
//!
//! May depend on: `views` (what a finding shows is what a notification says), `store`,
//! `mirror`, `forge`, `analysis`, `model`; a runtime and an HTTP client.
//! **Never:** serve HTTP or know a request; nothing here decides who may see what (views and
//! the server's guard do).

pub mod detection;
pub mod evidence;
pub mod forge_deploys;
pub mod gate;
pub mod lease;
pub mod maintenance;
pub mod mirrors;
pub mod notify;
pub mod outbound;
pub mod revert;
pub mod suspects;
pub mod telemetry;

use std::collections::HashMap;
use std::sync::Mutex;

pub use detection::{DetectionSettings, evaluate_due};
pub use lease::Lease;
pub use maintenance::run_maintenance_once;
pub use mirrors::{SyncError, sync_once};
pub use notify::{
    AlertSink, DEFAULT_TIER, ForgeNotify, NotifySettings, RepositoryForge, RetrySettings,
    ServiceNotify, SinkAuth, announce_deploy, announce_recent, deliver_due,
};
pub use telemetry::{MirrorHealth, Telemetry, TelemetrySnapshot};

/// How long spans are kept, and how much disk they may take.
#[derive(Debug, Clone)]
pub struct Retention {
    pub spans_max_age_nanos: u64,
    pub disk_budget_bytes: Option<u64>,
}

/// What the jobs work with: the views' context and each job's settings.
pub struct Jobs {
    pub ctx: views::Context,
    pub detection: DetectionSettings,
    pub notifications: NotifySettings,
    pub retention: Retention,
    /// `retention.audit`: audit records older than this are deleted.
    pub audit_max_age_nanos: u64,
    /// Whether this replica runs the fleet's background jobs.
    pub lease: Lease,
    /// For calls to forge APIs and receivers; an error when the system offers no TLS roots.
    pub http: Result<reqwest::Client, String>,
    /// Links' base when no public URL is known: `http://` + the configured main address.
    pub listen_url: String,
    /// Wakes the mirror job (a push webhook arrived).
    pub mirror_wake: tokio::sync::Notify,
    /// When each API token was last used, flushed to the store by the upkeep job.
    pub token_uses: TokenUses,
    /// Per repository, the tip whose history was last imported.
    imported_tips: Mutex<HashMap<String, String>>,
    /// What `/metrics` shows of the jobs' work.
    pub telemetry: Telemetry,
}

/// The settings `Jobs` is built from.
pub struct JobSettings {
    pub detection: DetectionSettings,
    pub notifications: NotifySettings,
    pub retention: Retention,
    pub audit_max_age_nanos: u64,
    pub background_lease: std::time::Duration,
    /// `http://` + the configured main address.
    pub listen_url: String,
}

impl Jobs {
    pub fn new(ctx: views::Context, settings: JobSettings) -> Jobs {
        Jobs {
            ctx,
            detection: settings.detection,
            notifications: settings.notifications,
            retention: settings.retention,
            audit_max_age_nanos: settings.audit_max_age_nanos,
            lease: Lease::new(settings.background_lease),
            http: outbound::client().map_err(|e| {
                tracing::warn!(error = %e, "no HTTP client for forge APIs");
                e.to_string()
            }),
            listen_url: settings.listen_url,
            mirror_wake: tokio::sync::Notify::new(),
            token_uses: TokenUses::default(),
            imported_tips: Mutex::default(),
            telemetry: Telemetry::default(),
        }
    }
}

impl Jobs {
    /// The base of links in messages: `server.public_url`, else the bound address.
    pub fn base_url(&self) -> String {
        self.ctx
            .public_url()
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| self.listen_url.clone())
    }
}

/// Token prefix → when it was last used; recorded by authentication, taken by upkeep.
#[derive(Debug, Default)]
pub struct TokenUses(Mutex<HashMap<String, u64>>);

impl TokenUses {
    pub fn record(&self, prefix: &str, now_unix_nanos: u64) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(prefix.to_owned(), now_unix_nanos);
    }

    pub fn take(&self) -> Vec<(String, u64)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner())).into_iter().collect()
    }
}
