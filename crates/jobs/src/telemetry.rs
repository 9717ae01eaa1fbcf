//! What the jobs count for `/metrics`: detection's passes and looks and how late the oldest
//! due look was, explanation time, findings by verdict, delivery attempts per receiver and
//! outcome, and each mirror's last good fetch and failures. Counted where the work happens;
//! `edge::metrics` writes them out.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use analysis::histogram::Histogram;

#[derive(Debug, Default)]
pub struct Telemetry {
    /// Detection passes over the deploys under evaluation.
    pub detection_passes_total: AtomicU64,
    /// When the last detection pass ended, in seconds since 1970 (0: none yet).
    pub last_detection_pass_unix_secs: AtomicU64,
    /// Deploys whose evaluation was not final at the last pass.
    pub deploys_under_evaluation: AtomicU64,
    /// How long the oldest due look had waited past its minute at the last pass, in
    /// milliseconds.
    pub oldest_due_look_lag_millis: AtomicU64,
    /// Looks taken (one deploy at one minute).
    pub looks_total: AtomicU64,
    /// Explaining one regression: exemplars, evidence, suspects and the rollback draft.
    pub explanation_seconds: Mutex<Histogram>,
    /// Findings made, by verdict.
    pub findings_total: Mutex<BTreeMap<String, u64>>,
    /// Delivery attempts by (receiver, outcome: `delivered`, `retried`, `dead`).
    pub deliveries_total: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Per repository: the last successful clone or fetch (seconds since 1970), and failures.
    pub mirrors: Mutex<BTreeMap<String, MirrorHealth>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MirrorHealth {
    pub last_success_unix_secs: Option<u64>,
    pub failures_total: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Telemetry {
    pub(crate) fn pass_done(&self, now_unix_nanos: u64, under_evaluation: usize, lag_nanos: u64) {
        self.detection_passes_total.fetch_add(1, Ordering::Relaxed);
        self.last_detection_pass_unix_secs.store(now_unix_nanos / 1_000_000_000, Ordering::Relaxed);
        self.deploys_under_evaluation.store(under_evaluation as u64, Ordering::Relaxed);
        self.oldest_due_look_lag_millis.store(lag_nanos / 1_000_000, Ordering::Relaxed);
    }

    pub(crate) fn finding_made(&self, verdict: &str) {
        *lock(&self.findings_total).entry(verdict.to_owned()).or_default() += 1;
    }

    pub(crate) fn explained(&self, seconds: f64) {
        lock(&self.explanation_seconds).observe(seconds);
    }

    pub(crate) fn delivery(&self, receiver: &str, outcome: &'static str) {
        *lock(&self.deliveries_total).entry((receiver.to_owned(), outcome)).or_default() += 1;
    }

    pub(crate) fn mirror_fetched(&self, repository: &str, now_unix_nanos: u64, ok: bool) {
        let mut mirrors = lock(&self.mirrors);
        let health = mirrors.entry(repository.to_owned()).or_default();
        if ok {
            health.last_success_unix_secs = Some(now_unix_nanos / 1_000_000_000);
        } else {
            health.failures_total += 1;
        }
    }

    /// A copy of the histogram and the maps, for one scrape.
    pub fn snapshot(&self) -> TelemetrySnapshot {
        TelemetrySnapshot {
            explanation_seconds: lock(&self.explanation_seconds).clone(),
            findings_total: lock(&self.findings_total).clone(),
            deliveries_total: lock(&self.deliveries_total).clone(),
            mirrors: lock(&self.mirrors).clone(),
        }
    }
}

/// The parts of [`Telemetry`] behind locks, copied out.
#[derive(Debug, Clone)]
pub struct TelemetrySnapshot {
    pub explanation_seconds: Histogram,
    pub findings_total: BTreeMap<String, u64>,
    pub deliveries_total: BTreeMap<(String, &'static str), u64>,
    pub mirrors: BTreeMap<String, MirrorHealth>,
}
