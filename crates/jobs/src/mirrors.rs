//! Keeping git mirrors fresh and their history in the change graph: each configured
//! repository with a `url` is cloned (`--mirror`) under the data directory, or read in place
//! from its `path`; a background job fetches on a timer and whenever a push webhook arrives,
//! then records the commits new on the default branch (parents and changed files included).

use std::sync::Arc;

use mirror::Mirror;
use store::ChangeBatch;

use views::{MirrorSource, RepositorySettings};

use crate::Jobs;

/// Commits recorded per fetch at most (the first import of a long history stops here; ranges
/// are always read from the mirror itself).
const MAX_IMPORT_COMMITS: usize = 500;

pub async fn run_mirrors(jobs: Arc<Jobs>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let repositories: Vec<RepositorySettings> =
        jobs.ctx.changes.repositories.iter().filter(|r| r.mirror.is_some()).cloned().collect();
    if repositories.is_empty() {
        return;
    }
    loop {
        for repository in &repositories {
            let job = Arc::clone(&jobs);
            let repository = repository.clone();
            let name = repository.name.clone();
            // Every replica keeps its clone fresh (it serves diffs and CODEOWNERS); only
            // the background lease's holder imports new commits into the metadata.
            let result = tokio::task::spawn_blocking(move || {
                let import = job.lease.is_held();
                sync(&job, &repository, import)
            })
            .await;
            match result {
                Ok(Ok(imported)) if imported > 0 => {
                    tracing::info!(repository = %name, imported, "mirror updated");
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(repository = %name, error = %e, "mirror update failed; will retry")
                }
                Err(e) => tracing::error!(repository = %name, error = %e, "mirror update panicked"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(jobs.ctx.changes.mirrors.fetch_interval) => {}
            _ = jobs.mirror_wake.notified() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// Clones or fetches one mirror and records the commits new on its default branch.
/// Returns how many commits were recorded.
pub fn sync_once(jobs: &Jobs, repository: &RepositorySettings) -> Result<usize, SyncError> {
    sync(jobs, repository, true)
}

/// Clones or fetches one mirror and reads its CODEOWNERS; with `import`, also records the
/// commits new on its default branch. Returns how many commits were recorded.
fn sync(jobs: &Jobs, repository: &RepositorySettings, import: bool) -> Result<usize, SyncError> {
    let result = fetch_and_import(jobs, repository, import);
    if repository.mirror.is_some() {
        let now = jobs.ctx.clock.now_unix_nanos();
        jobs.telemetry.mirror_fetched(&repository.name, now, result.is_ok());
    }
    result
}

fn fetch_and_import(
    jobs: &Jobs,
    repository: &RepositorySettings,
    import: bool,
) -> Result<usize, SyncError> {
    let settings = &jobs.ctx.changes.mirrors;
    let mirror = match &repository.mirror {
        Some(MirrorSource::Clone(url)) => {
            let path = settings.dir.join(format!("{}.git", safe_name(&repository.name)));
            let existed = path.join("HEAD").exists();
            let mirror = Mirror::open_or_clone(&path, url, settings.show_progress)?;
            if existed {
                mirror.fetch()?;
            }
            mirror
        }
        Some(MirrorSource::Path(path)) => Mirror::open_local(path),
        None => return Ok(0),
    };
    jobs.ctx.mirrors.set_ready(&repository.name, mirror.clone());
    let Some(tip) = mirror.resolve("HEAD")? else { return Ok(0) };
    if !import {
        update_code_owners(jobs, repository, &mirror)?;
        return Ok(0);
    }
    let previous =
        jobs.imported_tips.lock().unwrap_or_else(|p| p.into_inner()).get(&repository.name).cloned();
    if previous.as_deref() == Some(tip.as_str()) {
        return Ok(0);
    }
    // After a force-push the old tip may be gone; then import from scratch (bounded).
    let from = previous.filter(|old| matches!(mirror.resolve(old), Ok(Some(_))));
    let commits = mirror.range(from.as_deref(), &tip, MAX_IMPORT_COMMITS)?;
    let imported = commits.len();
    jobs.ctx.store.record_changes(&ChangeBatch {
        repository: repository.name.clone(),
        commits,
        reviews: Vec::new(),
        branch_head: None,
    })?;
    update_code_owners(jobs, repository, &mirror)?;
    jobs.imported_tips
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(repository.name.clone(), tip);
    Ok(imported)
}

/// Reads the mirror's CODEOWNERS at `HEAD` into the mirrors the views read.
fn update_code_owners(
    jobs: &Jobs,
    repository: &RepositorySettings,
    mirror: &Mirror,
) -> Result<(), SyncError> {
    let owners = mirror.code_owners(repository.forge)?;
    jobs.ctx.mirrors.set_code_owners(&repository.name, owners);
    Ok(())
}

fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect()
}

/// Why a mirror update failed: reported in the log and retried on the next round.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Git(#[from] mirror::GitError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}
