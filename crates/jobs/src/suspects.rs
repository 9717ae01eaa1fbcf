//! A regressed deploy's suspects and rollback draft: the commits of its exact range read from
//! the mirror (merges left out, their commits kept; a rollback's range read backwards),
//! ranked by `analysis::suspects`, then shown change first with their reviews, and the revert
//! patch and commands for the suspect commits.

use analysis::suspects::{Candidate, ChangedFile, ChangedHunk, Evidence, Ranking, rank};
use mirror::Mirror;
use model::{Commit, Deploy, ForgeKind};
use store::{StoreError, StoredCommit};

use crate::Jobs;
use shapes::{BisectJ, RangeSummaryJ, RankingJ, RollbackJ, SuspectJ};
use views::changes::{ChangeResolver, commit_view};
use views::deploys::deploy_commit;

/// Commits ranked per deploy; a bigger range is cut to its newest commits and says so.
/// Revert patches larger than this are left out (the commands still work).
const MAX_PATCH_BYTES: usize = 1024 * 1024;

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
            let diffs = mirror.hunks(&commit.sha).unwrap_or_default();
            let syntax = read_syntax(mirror, commit, &diffs);
            let files = diffs
                .into_iter()
                .zip(syntax)
                .map(|(file, syntax)| ChangedFile {
                    path: file.path,
                    hunks: file
                        .hunks
                        .into_iter()
                        .enumerate()
                        .map(|(i, h)| ChangedHunk {
                            new_start: h.new_start,
                            new_lines: h.new_lines,
                            section: h.section,
                            lines: h.lines,
                            syntax: syntax.as_ref().and_then(|s| s.get(i).cloned()),
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

/// Each changed file's hunks as its syntax reads them (`None` for a language that is not
/// parsed, or a revision the mirror cannot show): the file at the commit's first parent and
/// at the commit, and the hunks' line ranges (the diff has no context lines).
fn read_syntax(
    mirror: &Mirror,
    commit: &Commit,
    diffs: &[mirror::FileDiff],
) -> Vec<Option<Vec<syntax::HunkSyntax>>> {
    let parent = commit.parents.first();
    let texts: Vec<(Option<String>, Option<String>)> = diffs
        .iter()
        .map(|file| {
            let old_path = file.old_path.as_deref().unwrap_or(&file.path);
            let old = parent.and_then(|p| mirror.file_at(p, old_path).ok().flatten());
            let new = mirror.file_at(&commit.sha, &file.path).ok().flatten();
            (old, new)
        })
        .collect();
    let files: Vec<syntax::FileChange<'_>> = diffs
        .iter()
        .zip(&texts)
        .map(|(file, (old, new))| syntax::FileChange {
            path: &file.path,
            old_text: old.as_deref(),
            new_text: new.as_deref(),
            hunks: file
                .hunks
                .iter()
                .map(|h| syntax::HunkLines {
                    removed: (h.old_start..h.old_start + h.old_lines).collect(),
                    added: (h.new_start..h.new_start + h.new_lines).collect(),
                })
                .collect(),
        })
        .collect();
    syntax::classify(&files)
}

/// Ranks the range and renders suspects, bisect plan and rollback draft.
pub fn suspects_and_rollback(
    jobs: &Jobs,
    deploy: &Deploy,
    range: &Range,
    evidence: &Evidence,
) -> Result<(Vec<SuspectJ>, RankingJ, RollbackJ), StoreError> {
    let candidates = &range.candidates;
    let ranking = rank(candidates, evidence);
    let blamed = blamed_in_range(jobs, deploy, range, evidence)?;
    let resolver = ChangeResolver::new(&jobs.ctx);
    let mut suspects = Vec::new();
    for suspect in &ranking.suspects {
        let Some(stored) = jobs.ctx.store.commit(&range.repository, &suspect.sha)? else {
            continue;
        };
        let commit = &stored.commit;
        let files: Vec<&str> = candidates
            .iter()
            .find(|c| c.sha == suspect.sha)
            .map(|c| c.files.iter().map(|f| f.path.as_str()).collect())
            .unwrap_or_default();
        let review = resolver.review(&stored)?;
        let mut reasons = Vec::new();
        if range.is_rollback {
            reasons.push(format!("the deploy rolled back past this commit ({})", commit.subject()));
        }
        let blame_reasons = blamed.iter().filter(|(sha, _)| *sha == suspect.sha);
        reasons.extend(blame_reasons.map(|(_, why)| why.clone()));
        reasons.extend(suspect.reasons.iter().cloned());
        suspects.push(SuspectJ {
            commit: commit_view(&jobs.ctx.changes, &stored),
            score: (suspect.score * 1000.0).round() / 1000.0,
            reasons,
            files: files.into_iter().map(str::to_owned).collect(),
            review,
        });
    }
    let ranking_view = RankingJ {
        separated: ranking.separated,
        bisect: ranking.bisect.as_ref().map(|b| BisectJ {
            canary: b.canary.clone(),
            first_half: b.first_half.clone(),
            max_rounds: b.max_rounds,
            text: b.text.clone(),
        }),
        range: Some(RangeSummaryJ {
            repository: range.repository.clone(),
            commits: range.commits.len(),
            truncated: range.truncated,
            is_rollback: range.is_rollback,
        }),
        unavailable: None,
    };
    let rollback = rollback_draft(jobs, deploy, range, &ranking)?;
    Ok((suspects, ranking_view, rollback))
}

/// How to send the revert of a Differential revision for review. Checked against Arcanist
/// 3b6004a3 (2026), where `arc backout` no longer exists (removed in 2020): the revert is
/// committed with git, then `arc diff` against its parent creates a new revision.
fn phabricator_revert(revision: &str) -> String {
    format!(
        "# Phabricator/Phorge: after the `git revert` above, `arc diff --create HEAD^` sends the revert of {revision} for review as a new revision"
    )
}

/// The previous version, the revert patch of the suspect commit(s) and the commands.
fn rollback_draft(
    jobs: &Jobs,
    deploy: &Deploy,
    range: &Range,
    ranking: &Ranking,
) -> Result<RollbackJ, StoreError> {
    let previous = match deploy.previous_id {
        Some(id) => jobs.ctx.store.deploy(id)?,
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
        .filter_map(|sha| jobs.ctx.store.commit(&range.repository, sha).ok().flatten())
        .filter_map(|stored: StoredCommit| phabricator_revision(jobs, &stored))
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
        commands.extend(revisions.iter().map(|r| phabricator_revert(r)));
    }
    let note = if range.is_rollback {
        Some(
            "this deploy was itself a rollback: redeploy the version it replaced instead of reverting",
        )
    } else if !patch_complete {
        Some("the patch is too large or unreadable to include; use the git revert command")
    } else {
        None
    };
    Ok(RollbackJ {
        previous_version: previous.as_ref().map(|p| p.version.clone()),
        previous_deploy_id: previous.as_ref().map(|p| p.id),
        revert_commits: to_revert.into_iter().map(str::to_owned).collect(),
        commands,
        patch: (!patch.is_empty() && patch_complete).then_some(patch),
        patch_applies_with: "git apply -R".into(),
        note: note.map(str::to_owned),
    })
}

/// `D123` when the commit landed through a Phabricator revision.
fn phabricator_revision(jobs: &Jobs, stored: &StoredCommit) -> Option<String> {
    let reviews = jobs.ctx.store.reviews_of_commit(&stored.commit.sha).ok()?;
    if let Some(found) = reviews.iter().find(|r| r.review.kind == ForgeKind::Phabricator) {
        return Some(found.review.id.clone());
    }
    views::changes::differential_revision(&stored.commit.message).map(|(id, _)| id)
}

/// The deploy's range as candidates, oldest first.
/// Blame of the code the slow spans run (their most common locations), at the deployed
/// version: (the commit that last changed it, in words) for each location whose last change
/// is one of the deploy's commits. Evidence for people; the ranking does not read it.
fn blamed_in_range(
    jobs: &Jobs,
    deploy: &Deploy,
    range: &Range,
    evidence: &Evidence,
) -> Result<Vec<(String, String)>, StoreError> {
    /// Locations blamed per finding at most (the most common first).
    const MAX_BLAMED_LOCATIONS: usize = 3;
    let Some(deployed) = deploy_commit(&jobs.ctx, deploy)?.sha else { return Ok(Vec::new()) };
    let source = views::blame::Source {
        changes: &jobs.ctx.changes,
        service: &deploy.service,
        mirror: &range.mirror,
        repository: &range.repository,
        sha: &deployed,
    };
    let mut locations: Vec<&analysis::suspects::CodeLocation> =
        evidence.code_locations.iter().filter(|l| l.file.is_some()).collect();
    locations.sort_by(|a, b| b.share.total_cmp(&a.share));
    let mut blamed = Vec::new();
    for location in locations.into_iter().take(MAX_BLAMED_LOCATIONS) {
        let code = model::CodeLocation {
            file_path: location.file.clone(),
            function_name: location.function.clone(),
            line_number: location.line.map(i64::from),
            stacktrace: None,
        };
        let Ok(found) = views::blame::blame(&jobs.ctx.blames, &source, &code) else { continue };
        if !range.candidates.iter().any(|c| c.sha == found.commit.sha) {
            continue;
        }
        let what = match &location.function {
            Some(function) if found.whole_function => format!("`{function}`"),
            _ => "the code".to_owned(),
        };
        blamed.push((
            found.commit.sha.clone(),
            format!(
                "{what} that {:.0}% of the slow spans run ({} lines {}) was last changed by this commit, inside the deploy's range",
                location.share * 100.0,
                found.path,
                if found.extent.first_line == found.extent.last_line {
                    found.extent.first_line.to_string()
                } else {
                    format!("{}-{}", found.extent.first_line, found.extent.last_line)
                }
            ),
        ));
    }
    Ok(blamed)
}

pub struct Range {
    pub repository: String,
    pub mirror: Mirror,
    pub commits: Vec<Commit>,
    /// The commits with their hunks, as the scorer reads them (read once per deploy).
    pub candidates: Vec<Candidate>,
    pub is_rollback: bool,
    pub truncated: bool,
}

pub fn deploy_range(
    jobs: &Jobs,
    deploy: &Deploy,
) -> Result<Result<Range, views::ranges::NoRange>, StoreError> {
    Ok(views::ranges::range_commits(&jobs.ctx, deploy)?.map(|commits| {
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

#[cfg(test)]
#[path = "suspects_tests.rs"]
mod tests;
