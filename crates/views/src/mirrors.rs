//! Where a repository's history comes from, and the mirrors ready for reading (set by the
//! mirror job, read by every view that shows code: ranges, diffs, CODEOWNERS).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mirror::{CodeOwners, Mirror};

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
pub struct Mirrors {
    ready: RwLock<HashMap<String, Mirror>>,
    code_owners: RwLock<HashMap<String, Arc<CodeOwners>>>,
}

impl Mirrors {
    pub fn get(&self, repository: &str) -> Option<Mirror> {
        self.ready.read().unwrap_or_else(|p| p.into_inner()).get(repository).cloned()
    }

    /// The repository's CODEOWNERS at the last fetched `HEAD`.
    pub fn code_owners(&self, repository: &str) -> Option<Arc<CodeOwners>> {
        self.code_owners.read().unwrap_or_else(|p| p.into_inner()).get(repository).cloned()
    }

    /// Makes `mirror` readable as `repository` (the mirror job, after a clone or fetch).
    pub fn set_ready(&self, repository: &str, mirror: Mirror) {
        self.ready.write().unwrap_or_else(|p| p.into_inner()).insert(repository.to_owned(), mirror);
    }

    /// Records the repository's CODEOWNERS at its fetched `HEAD` (`None`: it has none).
    pub fn set_code_owners(&self, repository: &str, owners: Option<CodeOwners>) {
        let mut code_owners = self.code_owners.write().unwrap_or_else(|p| p.into_inner());
        match owners {
            Some(owners) => code_owners.insert(repository.to_owned(), Arc::new(owners)),
            None => code_owners.remove(repository),
        };
    }

    pub fn all(&self) -> Vec<(String, Mirror)> {
        let ready = self.ready.read().unwrap_or_else(|p| p.into_inner());
        ready.iter().map(|(name, mirror)| (name.clone(), mirror.clone())).collect()
    }
}
