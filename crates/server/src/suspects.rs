//! A regressed deploy's suspects and rollback draft: the commits of its exact range read from
//! the mirror (merges left out, their commits kept; a rollback's range read backwards),
//! ranked by `analysis::suspects`, then shown change first with their reviews, and the revert
//! patch and commands for the suspect commits.

use analysis::suspects::{Candidate, ChangedFile, ChangedHunk, Evidence, Ranking, rank};
use mirror::Mirror;
use model::{Commit, Deploy, ForgeKind};
use serde_json::{Value as Json_, json};
use store::{StoreError, StoredCommit};

use crate::AppState;
use crate::changes::{ChangeResolver, commit_view};
use crate::deploys::deploy_commit;

/// Commits ranked per deploy; a bigger range is cut to its newest commits and says so.
const MAX_CANDIDATES: usize = 100;
/// Revert patches larger than this are left out (the commands still work).
const MAX_PATCH_BYTES: usize = 1024 * 1024;

/// The deploy's range as candidates, oldest first.
pub(crate) struct Range {
    pub(crate) repository: String,
    pub(crate) mirror: Mirror,
    pub(crate) commits: Vec<Commit>,
    /// The commits with their hunks, as the scorer reads them (read once per deploy).
    pub(crate) candidates: Vec<Candidate>,
    pub(crate) is_rollback: bool,
    pub(crate) truncated: bool,
}

/// Why no suspects could be named, in words for the finding.
pub(crate) type NoRange = String;

pub(crate) fn deploy_range(
    state: &AppState,
    deploy: &Deploy,
) -> Result<Result<Range, NoRange>, StoreError> {
    Ok(range_commits(state, deploy)?.map(|commits| {
        let candidates = candidates(&commits.mirror, &commits.commits);
        Range {
            repository: commits.repository,
            mirror: commits.mirror,
            commits: commits.commits,
            candidates,
            is_rollback: commits.is_rollback,
            truncated: commits.truncated,
        }
    }))
}

/// The commits a deploy shipped, without their hunks.
pub(crate) struct RangeCommits {
    pub(crate) repository: String,
    pub(crate) mirror: Mirror,
    /// Oldest first; merges left out.
    pub(crate) commits: Vec<Commit>,
    pub(crate) is_rollback: bool,
    pub(crate) truncated: bool,
}

/// The deploy's exact range from the mirror: from the previous deploy's commit to its own (a
/// rollback's read backwards), or its own commit alone when no earlier deploy is known.
pub(crate) fn range_commits(
    state: &AppState,
    deploy: &Deploy,
) -> Result<Result<RangeCommits, NoRange>, StoreError> {
    let store = &state.store;
    let to = deploy_commit(state, deploy)?;
    let (Some(to_sha), Some(stored)) = (to.sha, to.stored) else {
        return Ok(Err(format!(
            "the commit of version `{}` is unknown: report it with the deploy (`commit`) or set `vcs.ref.head.revision` on the spans",
            deploy.version
        )));
    };
    let Some(mirror) = state.mirrors.get(&stored.repository) else {
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
        Some(previous) => deploy_commit(state, previous)?.sha,
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

/// Reads each commit's hunks and the blame-ignore list into scorer candidates.
fn candidates(mirror: &Mirror, commits: &[Commit]) -> Vec<Candidate> {
    let head = commits.last().map(|c| c.sha.clone());
    let ignored: Vec<String> = head
        .and_then(|head| mirror.file_at(&head, ".git-blame-ignore-revs").ok().flatten())
        .map(|text| {
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim().to_ascii_lowercase())
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default();
    commits
        .iter()
        .map(|commit| {
            let files = mirror
                .hunks(&commit.sha)
                .unwrap_or_default()
                .into_iter()
                .map(|file| ChangedFile {
                    path: file.path,
                    hunks: file
                        .hunks
                        .into_iter()
                        .map(|h| ChangedHunk {
                            new_start: h.new_start,
                            new_lines: h.new_lines,
                            section: h.section,
                            lines: h.lines,
                        })
                        .collect(),
                })
                .collect();
            Candidate {
                sha: commit.sha.clone(),
                subject: commit.subject().to_owned(),
                files,
                ignored_for_blame: ignored.iter().any(|i| commit.sha.starts_with(i.as_str())),
            }
        })
        .collect()
}

/// Ranks the range and renders suspects, bisect plan and rollback draft.
pub(crate) fn suspects_and_rollback(
    state: &AppState,
    deploy: &Deploy,
    range: &Range,
    evidence: &Evidence,
) -> Result<(Json_, Json_), StoreError> {
    let candidates = &range.candidates;
    let ranking = rank(candidates, evidence);
    let resolver = ChangeResolver::new(state);
    let mut suspects = Vec::new();
    for suspect in &ranking.suspects {
        let Some(stored) = state.store.commit(&range.repository, &suspect.sha)? else { continue };
        let commit = &stored.commit;
        let files: Vec<&str> = candidates
            .iter()
            .find(|c| c.sha == suspect.sha)
            .map(|c| c.files.iter().map(|f| f.path.as_str()).collect())
            .unwrap_or_default();
        let review = resolver.review(&stored)?;
        suspects.push(json!({
            "commit": commit_view(&state.settings.changes, &stored),
            "score": (suspect.score * 1000.0).round() / 1000.0,
            "reasons": if range.is_rollback {
                let mut reasons = vec![format!("the deploy rolled back past this commit ({})", commit.subject())];
                reasons.extend(suspect.reasons.iter().cloned());
                reasons
            } else {
                suspect.reasons.clone()
            },
            "files": files,
            "review": review,
        }));
    }
    let ranking_view = json!({
        "suspects": suspects,
        "separated": ranking.separated,
        "bisect": ranking.bisect.as_ref().map(|b| json!({
            "canary": b.canary, "first_half": b.first_half, "max_rounds": b.max_rounds, "text": b.text,
        })),
        "range": {
            "repository": range.repository,
            "commits": range.commits.len(),
            "truncated": range.truncated,
            "is_rollback": range.is_rollback,
        },
    });
    let rollback = rollback_draft(state, deploy, range, &ranking)?;
    Ok((ranking_view, rollback))
}

/// The previous version, the revert patch of the suspect commit(s) and the commands.
fn rollback_draft(
    state: &AppState,
    deploy: &Deploy,
    range: &Range,
    ranking: &Ranking,
) -> Result<Json_, StoreError> {
    let previous = match deploy.previous_id {
        Some(id) => state.store.deploy(id)?,
        None => None,
    };
    // A clear suspect is reverted alone; otherwise the whole range (newest first).
    let mut to_revert: Vec<&str> = if ranking.separated {
        ranking.suspects.first().map(|s| vec![s.sha.as_str()]).unwrap_or_default()
    } else {
        range.candidates.iter().rev().map(|c| c.sha.as_str()).collect()
    };
    if range.is_rollback {
        to_revert.clear();
    }
    let mut patch = String::new();
    let mut patch_complete = true;
    for sha in &to_revert {
        match range.mirror.patch(sha) {
            Ok(text) if patch.len() + text.len() <= MAX_PATCH_BYTES => patch.push_str(&text),
            _ => patch_complete = false,
        }
    }
    let revisions: Vec<String> = to_revert
        .iter()
        .filter_map(|sha| state.store.commit(&range.repository, sha).ok().flatten())
        .filter_map(|stored: StoredCommit| phabricator_revision(state, &stored))
        .collect();
    let mut commands = Vec::new();
    if let Some(previous) = &previous {
        commands.push(format!(
            "# Fastest: redeploy the previous version of {} in {}: {}",
            deploy.service,
            if deploy.environment.is_empty() { "its environment" } else { &deploy.environment },
            previous.version
        ));
    }
    if !to_revert.is_empty() {
        commands.push(format!("git revert --no-edit {}", to_revert.join(" ")));
        commands.push(
            "# or, with the patch below saved as revert.patch: git apply -R revert.patch".into(),
        );
        for revision in &revisions {
            commands.push(format!(
                "# Phabricator: `arc backout {revision}` opens the revert as a new revision (or `git revert` as above, then `arc diff`)"
            ));
        }
    }
    Ok(json!({
        "previous_version": previous.as_ref().map(|p| p.version.clone()),
        "previous_deploy_id": previous.as_ref().map(|p| p.id),
        "revert_commits": to_revert,
        "commands": commands,
        "patch": (!patch.is_empty() && patch_complete).then_some(patch),
        "patch_applies_with": "git apply -R",
        "note": if range.is_rollback {
            Some("this deploy was itself a rollback: redeploy the version it replaced instead of reverting")
        } else if !patch_complete {
            Some("the patch is too large or unreadable to include; use the git revert command")
        } else {
            None
        },
    }))
}

/// `D123` when the commit landed through a Phabricator revision.
fn phabricator_revision(state: &AppState, stored: &StoredCommit) -> Option<String> {
    let reviews = state.store.reviews_of_commit(&stored.commit.sha).ok()?;
    if let Some(found) = reviews.iter().find(|r| r.review.kind == ForgeKind::Phabricator) {
        return Some(found.review.id.clone());
    }
    crate::changes::differential_revision(&stored.commit.message).map(|(id, _)| id)
}
