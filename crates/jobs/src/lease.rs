//! The background lease: work that must happen once across a fleet of replicas (detection,
//! retention, importing commits from mirrors, deciding and delivering notifications) runs
//! only on the replica that holds it. Ingest, the API, webhooks and the UI run everywhere;
//! so does per-replica upkeep (sealing or flushing what this process gathered, its mirror
//! clones, its health checks).
//!
//! The lease lives in the metadata database (`store::SpanStore::acquire_lease`). Each replica
//! tries to take or renew it every third of its duration. A holder trusts its hold for two
//! thirds of the duration after the renewal began, so it stops before any other replica can
//! take over even with some clock skew and a slow answer; a holder that dies is replaced
//! within one duration plus one renewal interval. With SQLite metadata there is one process,
//! and it always holds the lease.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use store::{SpanStore, StoreError};

use crate::Jobs;

/// The lease's name in the database.
const BACKGROUND: &str = "background";

pub struct Lease {
    /// This process, as other replicas see it: host, process id, start time.
    holder: String,
    duration: Duration,
    /// Until when this process may act as the holder.
    held_until: Mutex<Option<Instant>>,
}

impl Lease {
    pub fn new(duration: Duration) -> Lease {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "unknown-host".into());
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Lease {
            holder: format!("{host}/{}/{started}", std::process::id()),
            duration,
            held_until: Mutex::new(None),
        }
    }

    /// Whether this process runs the background jobs now.
    pub fn is_held(&self) -> bool {
        self.held_until().is_some_and(|until| Instant::now() < until)
    }

    fn held_until(&self) -> Option<Instant> {
        *self.held_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes or renews the lease; returns whether this process holds it. Blocks.
    pub fn renew(&self, store: &SpanStore) -> Result<bool, StoreError> {
        let began = Instant::now();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let held =
            store.acquire_lease(BACKGROUND, &self.holder, now, self.duration.as_nanos() as u64)?;
        let was_held = self.is_held();
        *self.held_until.lock().unwrap_or_else(|p| p.into_inner()) =
            held.then(|| began + self.duration * 2 / 3);
        if held && !was_held {
            tracing::info!(holder = %self.holder, "this replica now runs the background jobs (detection, retention, commit import, notifications)");
        } else if !held && was_held {
            tracing::warn!(holder = %self.holder, "this replica lost the background jobs' lease to another");
        }
        Ok(held)
    }

    /// Gives the lease up, so another replica takes over at once. Blocks.
    pub fn release(&self, store: &SpanStore) -> Result<(), StoreError> {
        *self.held_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
        store.release_lease(BACKGROUND, &self.holder)
    }
}

/// Takes or renews the lease once, from async code; a failure is logged (the next renewal
/// retries, and until then this replica does not run the background jobs).
pub async fn renew_once(jobs: &Arc<Jobs>) {
    let job = Arc::clone(jobs);
    match tokio::task::spawn_blocking(move || job.lease.renew(&job.ctx.store)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "renewing the background jobs' lease failed; will retry")
        }
        Err(e) => tracing::error!(error = %e, "renewing the background jobs' lease panicked"),
    }
}

/// Renews the lease every third of its duration until stopped, then releases it.
pub async fn run_lease(jobs: Arc<Jobs>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(jobs.lease.duration / 3);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
        renew_once(&jobs).await;
    }
    let job = Arc::clone(&jobs);
    match tokio::task::spawn_blocking(move || job.lease.release(&job.ctx.store)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "releasing the background jobs' lease failed; it expires on its own")
        }
        Err(e) => tracing::error!(error = %e, "releasing the background jobs' lease panicked"),
    }
}
