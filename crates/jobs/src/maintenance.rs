//! Background upkeep: every second, seal heads into blocks (or flush the catalog) and record
//! when tokens were last used, on every replica; every minute, on the replica holding the
//! background lease, apply retention (spans, audit records, expired sessions) and roll old
//! sketch minutes up into hours. Compaction of small blocks runs on its own every few
//! seconds, so a long merge never delays sealing.
//! Time comes from a [`Clock`] so tests can drive retention without waiting.

use std::sync::Arc;
use std::time::Duration;

use crate::Jobs;

const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);
const COMPACTION_INTERVAL: Duration = Duration::from_secs(5);
const RETENTION_EVERY_TICKS: u64 = 60;

pub async fn run_maintenance(jobs: Arc<Jobs>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut ticks = 0u64;
    let mut interval = tokio::time::interval(MAINTENANCE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        // Retention is the fleet's to do once: only the lease's holder applies it.
        let with_retention = ticks.is_multiple_of(RETENTION_EVERY_TICKS) && jobs.lease.is_held();
        ticks += 1;
        let jobs = Arc::clone(&jobs);
        let result =
            tokio::task::spawn_blocking(move || run_maintenance_once(&jobs, with_retention)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "store maintenance failed; will retry"),
            Err(e) => tracing::error!(error = %e, "store maintenance panicked; will retry"),
        }
    }
}

/// Merges small blocks every [`COMPACTION_INTERVAL`], on every replica (each owns its blocks).
pub async fn run_compaction(jobs: Arc<Jobs>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(COMPACTION_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let jobs = Arc::clone(&jobs);
        match tokio::task::spawn_blocking(move || jobs.ctx.store.compact()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "compaction failed; will retry"),
            Err(e) => tracing::error!(error = %e, "compaction panicked; will retry"),
        }
    }
}

/// One upkeep pass at the clock's current time: seal, and optionally apply retention.
pub fn run_maintenance_once(jobs: &Jobs, with_retention: bool) -> Result<(), store::StoreError> {
    let now = jobs.ctx.clock.now_unix_nanos();
    jobs.ctx.store.maintain(now)?;
    let accounts = jobs.ctx.store.accounts();
    let token_uses = jobs.token_uses.take();
    if !token_uses.is_empty() {
        accounts.touch_tokens(&token_uses)?;
    }
    // Outside the database, so deleting the newest audit records is seen by `audit verify`.
    if let Err(e) = accounts.write_witness() {
        tracing::warn!(error = %e, "cannot write the audit witness");
    }
    if with_retention {
        accounts.delete_expired_sessions(now)?;
        let cutoff = now.saturating_sub(jobs.audit_max_age_nanos);
        let deleted = accounts.enforce_audit_retention(cutoff)?;
        if deleted > 0 {
            tracing::info!(
                deleted,
                "audit records past `retention.audit` deleted; the chain now starts after them"
            );
        }
        let retention = &jobs.retention;
        jobs.ctx.store.enforce_retention(
            now,
            retention.spans_max_age_nanos,
            retention.disk_budget_bytes,
        )?;
        let detection = &jobs.detection;
        jobs.ctx.store.roll_up_sketches(
            now,
            detection.sketch_minutes_max_age_nanos,
            detection.sketches_max_age_nanos,
        )?;
    }
    Ok(())
}
