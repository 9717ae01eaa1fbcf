//! Keeping git mirrors fresh and their history in the change graph: each configured
//! repository with a `url` is cloned (`--mirror`) under the data directory, or read in place
//! from its `path`; a background job fetches on a timer and whenever a push webhook arrives,
//! then records the commits new on the default branch (parents and changed files included).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use mirror::{CodeOwners, Mirror};
use store::ChangeBatch;

use crate::AppState;
use crate::changes::RepositorySettings;

/// Commits recorded per fetch at most (the first import of a long history stops here; ranges
/// are always read from the mirror itself).
const MAX_IMPORT_COMMITS: usize = 500;

/// Where a repository's history comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorSource {
    /// Cloned with `git clone --mirror` and fetched (credentials as git resolves them).
    Clone(String),
    /// An existing repository on this machine, read in place.
    Path(PathBuf),
}

#[derive(Debug, Clone)]
pub struct MirrorSettings {
    /// Where cloned mirrors live (`<data_dir>/mirrors`).
    pub dir: PathBuf,
    pub fetch_interval: Duration,
    /// Show clone progress (when stderr is a terminal).
    pub show_progress: bool,
}

impl Default for MirrorSettings {
    fn default() -> Self {
        MirrorSettings {
            dir: PathBuf::from("spanblame-data/mirrors"),
            fetch_interval: Duration::from_secs(300),
            show_progress: false,
        }
    }
}

/// Mirrors ready for reading, by repository name.
#[derive(Default)]
pub(crate) struct Mirrors {
    ready: RwLock<HashMap<String, Mirror>>,
    code_owners: RwLock<HashMap<String, Arc<CodeOwners>>>,
    imported_tips: Mutex<HashMap<String, String>>,
    pub(crate) wake: tokio::sync::Notify,
}

impl Mirrors {
    pub(crate) fn get(&self, repository: &str) -> Option<Mirror> {
        self.ready.read().unwrap_or_else(|p| p.into_inner()).get(repository).cloned()
    }

    /// The repository's CODEOWNERS at the last fetched `HEAD`.
    pub(crate) fn code_owners(&self, repository: &str) -> Option<Arc<CodeOwners>> {
        self.code_owners.read().unwrap_or_else(|p| p.into_inner()).get(repository).cloned()
    }

    pub(crate) fn all(&self) -> Vec<(String, Mirror)> {
        let ready = self.ready.read().unwrap_or_else(|p| p.into_inner());
        ready.iter().map(|(name, mirror)| (name.clone(), mirror.clone())).collect()
    }
}

pub(crate) async fn run_mirrors(
    state: Arc<AppState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let repositories: Vec<RepositorySettings> = state
        .settings
        .changes
        .repositories
        .iter()
        .filter(|r| r.mirror.is_some())
        .cloned()
        .collect();
    if repositories.is_empty() {
        return;
    }
    loop {
        for repository in &repositories {
            let job_state = Arc::clone(&state);
            let repository = repository.clone();
            let name = repository.name.clone();
            // Every replica keeps its clone fresh (it serves diffs and CODEOWNERS); only
            // the background lease's holder imports new commits into the metadata.
            let result = tokio::task::spawn_blocking(move || {
                let import = job_state.lease.is_held();
                sync(&job_state, &repository, import)
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
            _ = tokio::time::sleep(state.settings.changes.mirrors.fetch_interval) => {}
            _ = state.mirrors.wake.notified() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// Clones or fetches one mirror and records the commits new on its default branch.
/// Returns how many commits were recorded.
pub fn sync_once(state: &AppState, repository: &RepositorySettings) -> Result<usize, SyncError> {
    sync(state, repository, true)
}

/// Clones or fetches one mirror and reads its CODEOWNERS; with `import`, also records the
/// commits new on its default branch. Returns how many commits were recorded.
fn sync(
    state: &AppState,
    repository: &RepositorySettings,
    import: bool,
) -> Result<usize, SyncError> {
    let settings = &state.settings.changes.mirrors;
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
    state
        .mirrors
        .ready
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(repository.name.clone(), mirror.clone());
    let Some(tip) = mirror.resolve("HEAD")? else { return Ok(0) };
    if !import {
        update_code_owners(state, repository, &mirror)?;
        return Ok(0);
    }
    let previous = state
        .mirrors
        .imported_tips
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&repository.name)
        .cloned();
    if previous.as_deref() == Some(tip.as_str()) {
        return Ok(0);
    }
    // After a force-push the old tip may be gone; then import from scratch (bounded).
    let from = previous.filter(|old| matches!(mirror.resolve(old), Ok(Some(_))));
    let commits = mirror.range(from.as_deref(), &tip, MAX_IMPORT_COMMITS)?;
    let imported = commits.len();
    state.store.record_changes(&ChangeBatch {
        repository: repository.name.clone(),
        commits,
        reviews: Vec::new(),
        branch_head: None,
    })?;
    update_code_owners(state, repository, &mirror)?;
    state
        .mirrors
        .imported_tips
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(repository.name.clone(), tip);
    Ok(imported)
}

/// Reads the mirror's CODEOWNERS at `HEAD` into the state.
fn update_code_owners(
    state: &AppState,
    repository: &RepositorySettings,
    mirror: &Mirror,
) -> Result<(), SyncError> {
    let owners = mirror.code_owners(repository.forge)?;
    let mut code_owners = state.mirrors.code_owners.write().unwrap_or_else(|p| p.into_inner());
    match owners {
        Some(owners) => code_owners.insert(repository.name.clone(), Arc::new(owners)),
        None => code_owners.remove(&repository.name),
    };
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
