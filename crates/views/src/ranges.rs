//! A deploy's exact commit range, read from its repository's mirror: from the previous
//! deploy's commit to its own (merges left out; a rollback's range read backwards).

/// Commits read per deploy; a bigger range is cut to its newest commits and says so.
pub const MAX_CANDIDATES: usize = 100;

use mirror::Mirror;
use model::{Commit, Deploy};
use store::StoreError;

use crate::Context;
use crate::deploys::deploy_commit;

/// Why no suspects could be named, in words for the finding.
pub type NoRange = String;

/// The commits a deploy shipped, without their hunks.
pub struct RangeCommits {
    pub repository: String,
    pub mirror: Mirror,
    /// Oldest first; merges left out.
    pub commits: Vec<Commit>,
    pub is_rollback: bool,
    pub truncated: bool,
}

/// The deploy's exact range from the mirror: from the previous deploy's commit to its own (a
/// rollback's read backwards), or its own commit alone when no earlier deploy is known.
pub fn range_commits(
    ctx: &Context,
    deploy: &Deploy,
) -> Result<Result<RangeCommits, NoRange>, StoreError> {
    let store = &ctx.store;
    let to = deploy_commit(ctx, deploy)?;
    let (Some(to_sha), Some(stored)) = (to.sha, to.stored) else {
        return Ok(Err(format!(
            "the commit of version `{}` is unknown: report it with the deploy (`commit`) or set `vcs.ref.head.revision` on the spans",
            deploy.version
        )));
    };
    let Some(mirror) = ctx.mirrors.get(&stored.repository) else {
        return Ok(Err(format!(
            "repository `{}` has no mirror: add it under [[repositories]] with a `url` so spanblame can read the range",
            stored.repository
        )));
    };
    let previous = match deploy.previous_id {
        Some(id) => store.deploy(id)?,
        None => None,
    };
    let from = match &previous {
        Some(previous) => deploy_commit(ctx, previous)?.sha,
        None => None,
    };
    let git = |e: mirror::GitError| e.to_string();
    let read = || -> Result<RangeCommits, String> {
        let Some(from) = from else {
            // No earlier deploy is known: the deploy's own commit is the only candidate.
            return Ok(RangeCommits {
                repository: stored.repository.clone(),
                mirror: mirror.clone(),
                commits: mirror.range(None, &to_sha, 1).map_err(git)?,
                is_rollback: false,
                truncated: false,
            });
        };
        let mut commits = mirror.range(Some(&from), &to_sha, MAX_CANDIDATES + 1).map_err(git)?;
        let mut is_rollback = false;
        if commits.is_empty()
            && from != to_sha
            && mirror.is_ancestor(&to_sha, &from).map_err(git)?
        {
            // Back to an older commit: what it removed is what changed.
            commits = mirror.range(Some(&to_sha), &from, MAX_CANDIDATES + 1).map_err(git)?;
            is_rollback = true;
        }
        let truncated = commits.len() > MAX_CANDIDATES;
        commits.truncate(MAX_CANDIDATES);
        commits.retain(|c| c.parents.len() <= 1);
        commits.reverse();
        Ok(RangeCommits {
            repository: stored.repository.clone(),
            mirror: mirror.clone(),
            commits,
            is_rollback,
            truncated,
        })
    };
    Ok(read())
}
