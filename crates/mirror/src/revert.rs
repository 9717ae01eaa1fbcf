//! Reverting commits without a work tree: each commit's patch is applied in reverse to a
//! temporary index holding the branch head, newest first, so the revert either applies cleanly
//! (and its diff against the head is what a review or a branch carries) or names the files
//! that conflict.

use std::io::Write;
use std::process::Stdio;

use crate::{GitError, Mirror, check_sha, run};

/// The revert of some commits on top of a branch head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revert {
    /// The head it applies to.
    pub onto: String,
    /// The reverted commits, newest first (the order they were undone in).
    pub commits: Vec<String>,
    /// `git diff` from `onto` to the reverted tree (what Phabricator's `createrawdiff` takes).
    pub diff: String,
    /// The reverted tree, for a commit on top of `onto`.
    pub tree: String,
}

/// Why a revert cannot be made on that head.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevertRefusal {
    #[error("reverting {commit} conflicts with later changes in {}", files.join(", "))]
    Conflict { commit: String, files: Vec<String> },
    #[error("the revert changes nothing on {onto}: the commits were reverted already")]
    Empty { onto: String },
    #[error("`{commit}` is not in the mirror (fetch it, or check the sha)")]
    Unknown { commit: String },
}

impl Mirror {
    /// The revert of `commits` (full shas) on top of `onto` (a sha or branch), newest first.
    pub fn revert(
        &self,
        onto: &str,
        commits: &[String],
    ) -> Result<Result<Revert, RevertRefusal>, GitError> {
        let Some(onto) = self.resolve(onto)? else {
            return Ok(Err(RevertRefusal::Unknown { commit: onto.to_owned() }));
        };
        for commit in commits {
            check_sha(commit)?;
            if self.resolve(commit)?.is_none() {
                return Ok(Err(RevertRefusal::Unknown { commit: commit.clone() }));
            }
        }
        // Newest first: a commit is undone before the ones it builds on.
        let mut ordered = commits.to_vec();
        ordered.dedup();
        let mut sorted: Vec<String> = Vec::with_capacity(ordered.len());
        for commit in ordered {
            let mut at = sorted.len();
            for (i, newer) in sorted.iter().enumerate() {
                if self.is_ancestor(newer, &commit)? {
                    at = i;
                    break;
                }
            }
            sorted.insert(at, commit);
        }
        let dir = tempfile::tempdir()
            .map_err(|source| GitError::Spawn { args: "(a temporary index)".into(), source })?;
        let index = dir.path().join("index");
        let with_index = |args: &[&str]| {
            let mut command = self.git();
            command.env("GIT_INDEX_FILE", &index).args(args);
            command
        };
        run(with_index(&["read-tree", "--end-of-options", &onto]), "read-tree")?;
        for commit in &sorted {
            let patch = self.patch(commit)?;
            let mut command = with_index(&["apply", "--cached", "--reverse", "--binary", "-"]);
            command.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
            let args = "apply --cached --reverse";
            let mut child =
                command.spawn().map_err(|source| GitError::Spawn { args: args.into(), source })?;
            if let Some(mut stdin) = child.stdin.take() {
                // A patch git stops reading early (a conflict) closes the pipe: not an error.
                let _ = stdin.write_all(patch.as_bytes());
            }
            let output = child
                .wait_with_output()
                .map_err(|source| GitError::Spawn { args: args.into(), source })?;
            if !output.status.success() {
                let stderr = String::from_utf8_lossy(&output.stderr);
                return Ok(Err(RevertRefusal::Conflict {
                    commit: commit.clone(),
                    files: conflicting_files(&stderr),
                }));
            }
        }
        let tree = run(with_index(&["write-tree"]), "write-tree")?.trim().to_owned();
        let diff = run(
            with_index(&[
                "diff",
                "--cached",
                "--no-color",
                "--no-ext-diff",
                "--full-index",
                "--end-of-options",
                &onto,
            ]),
            "diff --cached",
        )?;
        if diff.trim().is_empty() {
            return Ok(Err(RevertRefusal::Empty { onto }));
        }
        Ok(Ok(Revert { onto, commits: sorted, diff, tree }))
    }
}

/// The paths `git apply` names as not applying (`error: patch failed: <path>:<line>`,
/// `error: <path>: does not exist in index`, `error: <path>: patch does not apply`).
fn conflicting_files(stderr: &str) -> Vec<String> {
    let mut files: Vec<String> = Vec::new();
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix("error: ") else { continue };
        let path = if let Some(at) = rest.strip_prefix("patch failed: ") {
            at.rsplit_once(':').map_or(at, |(path, _line)| path)
        } else if let Some((path, _)) = rest.split_once(": ") {
            path
        } else {
            continue;
        };
        if !files.iter().any(|f| f == path) {
            files.push(path.to_owned());
        }
    }
    if files.is_empty() {
        files.push(stderr.trim().to_owned());
    }
    files
}

impl Mirror {
    /// The branch `HEAD` names (`main`), if it names one.
    pub fn default_branch(&self) -> Result<Option<String>, GitError> {
        let mut command = self.git();
        command.args(["symbolic-ref", "--quiet", "--short", "HEAD"]);
        match run(command, "symbolic-ref HEAD") {
            Ok(out) => Ok(Some(out.trim().to_owned()).filter(|b| !b.is_empty())),
            Err(GitError::Failed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The revert as a commit on top of its head, by spanblame, dated `at_unix_secs` (so the
    /// same revert made again is the same commit).
    pub fn commit_revert(
        &self,
        revert: &Revert,
        message: &str,
        at_unix_secs: i64,
    ) -> Result<String, GitError> {
        check_sha(&revert.onto)?;
        check_sha(&revert.tree)?;
        let date = format!("@{at_unix_secs} +0000");
        let mut command = self.git();
        command
            .args(["commit-tree", "-p", &revert.onto, "-F", "-", "--end-of-options", &revert.tree])
            .env("GIT_AUTHOR_NAME", "spanblame")
            .env("GIT_AUTHOR_EMAIL", "spanblame@localhost")
            .env("GIT_COMMITTER_NAME", "spanblame")
            .env("GIT_COMMITTER_EMAIL", "spanblame@localhost")
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let args = "commit-tree";
        let mut child =
            command.spawn().map_err(|source| GitError::Spawn { args: args.into(), source })?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(message.as_bytes());
        }
        let output = child
            .wait_with_output()
            .map_err(|source| GitError::Spawn { args: args.into(), source })?;
        if !output.status.success() {
            return Err(GitError::Failed {
                args: args.into(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Pushes `sha` to branch `branch` of the repository the mirror was cloned from, with the
    /// credentials of its URL. An existing branch is moved only forward.
    pub fn push_branch(&self, sha: &str, branch: &str) -> Result<(), GitError> {
        check_sha(sha)?;
        crate::check_revision(branch)?;
        let mut command = self.git();
        // A mirror's remote pushes every ref; this pushes the one branch.
        command.args(["-c", "remote.origin.mirror=false", "push", "--quiet", "origin"]);
        command.arg(format!("{sha}:refs/heads/{branch}"));
        run(command, "push origin").map(|_| ())
    }
}
