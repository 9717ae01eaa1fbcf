//! Bare git mirrors of the repositories behind the services, read through the `git` binary.
//!
//! Webhooks are not enough to know what a deploy shipped: Gogs and Gitea list at most 5
//! commits per push and GitLab 20, a force-push rewrites history, and a version is often a
//! tag. A mirror is the source of truth for ranges (`previous..current`), the files and hunks
//! each commit changed, merge structure, tags, and files such as CODEOWNERS.
//!
//! Why the `git` binary and not a library: it is what the forge itself runs, so every
//! transport, credential helper, SSH config and TLS setup the operator already has works
//! unchanged; `git log`/`git diff` output with explicit formats is stable; mirror operations
//! are not on the ingest path (results are cached by callers); and it keeps a large git
//! library out of the build. Every revision passed in is a full hex sha or a ref checked
//! here, and user text never reaches git as an option (`--end-of-options`, `--`).
//!
//! **Architecture Invariant:** only this crate runs `git`.
//!
//! May depend on: `model`. **Never:** a git library, or a revision or path that reached git
//! unchecked.

mod codeowners;
mod revert;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use model::{Commit, FileChange, FileChangeKind, Person};

pub use crate::codeowners::{CodeOwners, Syntax as CodeOwnersSyntax};
pub use crate::revert::{Revert, RevertRefusal};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("running `git {args}`: {source}; is git installed and on PATH?")]
    Spawn { args: String, source: std::io::Error },
    #[error("`git {args}` failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error(
        "`{revision}` is not a revision spanblame passes to git (use a sha, tag or branch name)"
    )]
    BadRevision { revision: String },
}

/// One bare mirror on disk.
#[derive(Debug, Clone)]
pub struct Mirror {
    path: PathBuf,
}

/// A changed region of a file (`@@ -old_start,old_lines +new_start,new_lines @@`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    pub old_start: u32,
    pub old_lines: u32,
    pub new_start: u32,
    pub new_lines: u32,
    /// The function or section git names after the `@@`.
    pub section: String,
    /// The hunk's `-`/`+` lines, capped at [`MAX_HUNK_LINES`].
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiff {
    pub path: String,
    pub old_path: Option<String>,
    pub hunks: Vec<Hunk>,
}

/// Lines kept per hunk: enough to show evidence, bounded for huge generated files.
pub const MAX_HUNK_LINES: usize = 200;

impl Mirror {
    /// Opens the mirror at `path`, cloning `source` (a URL or a local repository) there first
    /// if it does not exist yet. `progress` shows git's clone progress on the terminal.
    pub fn open_or_clone(path: &Path, source: &str, progress: bool) -> Result<Mirror, GitError> {
        if path.join("HEAD").exists() {
            return Ok(Mirror { path: path.to_owned() });
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| GitError::Spawn {
                args: format!("clone (creating `{}`)", parent.display()),
                source,
            })?;
        }
        // Clone into a temporary name and rename, so an interrupted clone is never mistaken
        // for a mirror.
        let partial = path.with_extension("partial");
        let _ = std::fs::remove_dir_all(&partial);
        let mut command = Command::new("git");
        command.args(["clone", "--mirror", if progress { "--progress" } else { "--quiet" }]);
        command.arg("--end-of-options").arg(source).arg(&partial);
        if progress {
            command.stderr(Stdio::inherit());
        }
        run(command, "clone --mirror")?;
        std::fs::rename(&partial, path)
            .map_err(|source| GitError::Spawn { args: "clone (rename)".into(), source })?;
        Ok(Mirror { path: path.to_owned() })
    }

    /// Uses an existing repository (bare or not) in place, without cloning.
    pub fn open_local(path: &Path) -> Mirror {
        Mirror { path: path.to_owned() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn git(&self) -> Command {
        let mut command = Command::new("git");
        command.arg("-C").arg(&self.path);
        // No pager, no prompts for credentials that nobody can type, no local config drift.
        command.env("GIT_TERMINAL_PROMPT", "0").env("GIT_PAGER", "cat");
        command
    }

    /// Brings the mirror up to date; force-pushed and deleted refs follow the remote.
    pub fn fetch(&self) -> Result<(), GitError> {
        let mut command = self.git();
        command.args(["remote", "update", "--prune"]);
        run(command, "remote update --prune").map(|_| ())
    }

    /// The full sha a revision names (`sha`, `v1.2.3`, `refs/tags/v1.2.3`, `main`), if any.
    pub fn resolve(&self, revision: &str) -> Result<Option<String>, GitError> {
        check_revision(revision)?;
        let mut command = self.git();
        command
            .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
            .arg(format!("{revision}^{{commit}}"));
        match run(command, "rev-parse") {
            Ok(out) => Ok(Some(out.trim().to_owned())),
            Err(GitError::Failed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether `ancestor` is in the history of `descendant` (a commit is its own ancestor).
    /// A commit the mirror does not have is an error, not `false`.
    pub fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool, GitError> {
        check_revision(ancestor)?;
        check_revision(descendant)?;
        let mut command = self.git();
        command
            .args(["merge-base", "--is-ancestor", "--end-of-options", ancestor, descendant])
            .stdin(Stdio::null());
        let args = "merge-base --is-ancestor";
        let output =
            command.output().map_err(|source| GitError::Spawn { args: args.into(), source })?;
        match output.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(GitError::Failed {
                args: args.into(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            }),
        }
    }

    /// The commit a version names: the version itself if it is a revision, else the tag
    /// `v{version}`.
    pub fn resolve_version(&self, version: &str) -> Result<Option<String>, GitError> {
        if check_revision(version).is_err() {
            return Ok(None);
        }
        for candidate in [format!("refs/tags/{version}"), format!("refs/tags/v{version}")] {
            if let Some(sha) = self.resolve(&candidate)? {
                return Ok(Some(sha));
            }
        }
        if model::looks_like_sha(version) {
            return self.resolve(version);
        }
        Ok(None)
    }

    /// The commits reachable from `to` but not from `from` (everything up to `to` when
    /// `from` is `None`), newest first, with parents and changed files (merges against their
    /// first parent). At most `limit` commits.
    pub fn range(
        &self,
        from: Option<&str>,
        to: &str,
        limit: usize,
    ) -> Result<Vec<Commit>, GitError> {
        check_sha(to)?;
        let mut command = self.git();
        command.args([
            "log",
            "--topo-order",
            &format!("--max-count={limit}"),
            "--format=%H%x1f%P%x1f%an%x1f%ae%x1f%cn%x1f%ce%x1f%at%x1f%B%x1e",
            "--end-of-options",
        ]);
        match from {
            Some(from) => {
                check_sha(from)?;
                command.arg(format!("{from}..{to}"));
            }
            None => {
                command.arg(to);
            }
        }
        command.arg("--");
        let out = run(command, "log")?;
        let mut commits = Vec::new();
        for record in out.split('\x1e') {
            let record = record.trim_start_matches('\n');
            if record.is_empty() {
                continue;
            }
            let fields: Vec<&str> = record.splitn(8, '\x1f').collect();
            let [sha, parents, an, ae, cn, ce, at, body] = fields[..] else { continue };
            let person = |name: &str, email: &str| Person {
                name: (!name.is_empty()).then(|| name.to_owned()),
                email: (!email.is_empty()).then(|| email.to_owned()),
                username: None,
            };
            let parents: Vec<String> = parents.split_whitespace().map(str::to_owned).collect();
            let files = self.changed_files(sha, parents.first().map(String::as_str))?;
            commits.push(Commit {
                sha: sha.to_owned(),
                parents,
                author: person(an, ae),
                committer: person(cn, ce),
                message: body.trim_end().to_owned(),
                time_unix_secs: at.parse().ok(),
                url: None,
                files,
            });
        }
        Ok(commits)
    }

    /// Files a commit changed against its first parent (or all of them for a root commit).
    fn changed_files(&self, sha: &str, parent: Option<&str>) -> Result<Vec<FileChange>, GitError> {
        let mut command = self.git();
        command.args(["diff-tree", "-r", "-z", "--name-status", "-M", "--no-commit-id"]);
        match parent {
            Some(parent) => command.args(["--end-of-options", parent, sha]),
            None => command.args(["--root", "--end-of-options", sha]),
        };
        let out = run(command, "diff-tree")?;
        let mut fields = out.split('\0').filter(|f| !f.is_empty());
        let mut files = Vec::new();
        while let Some(status) = fields.next() {
            let kind = match status.as_bytes().first() {
                Some(b'A') => FileChangeKind::Added,
                Some(b'D') => FileChangeKind::Removed,
                _ => FileChangeKind::Modified,
            };
            // Renames and copies name the old path, then the new one.
            if matches!(status.as_bytes().first(), Some(b'R' | b'C')) {
                fields.next();
            }
            let Some(path) = fields.next() else { break };
            files.push(FileChange { path: path.to_owned(), kind });
        }
        files.sort();
        Ok(files)
    }

    /// The hunks a commit changed against its first parent (or against nothing for a root
    /// commit), with zero lines of context.
    pub fn hunks(&self, sha: &str) -> Result<Vec<FileDiff>, GitError> {
        Ok(parse_patch(&self.diff_against_first_parent(sha, &["-U0", "-M"])?))
    }

    /// A commit's full patch against its first parent (binary-safe, full object ids), as
    /// `git apply` reads it: applied with `-R` to a tree that holds the commit, it reverts it.
    pub fn patch(&self, sha: &str) -> Result<String, GitError> {
        self.diff_against_first_parent(sha, &["--binary", "--full-index"])
    }

    /// `git diff-tree -p` of one commit against its first parent (a root commit against
    /// nothing), with `options` added.
    fn diff_against_first_parent(&self, sha: &str, options: &[&str]) -> Result<String, GitError> {
        check_sha(sha)?;
        let mut command = self.git();
        command.args(["diff-tree", "-p"]).args(options).args([
            "--no-color",
            "--no-ext-diff",
            "--no-commit-id",
            "--root",
            "--first-parent",
            "-m",
            "--end-of-options",
            sha,
        ]);
        run(command, "diff-tree -p")
    }

    /// The CODEOWNERS file at `HEAD`, from the first place the repository's forge looks that
    /// has one, read in that forge's syntax (Gitea's regular expressions, or gitignore-style).
    pub fn code_owners(
        &self,
        forge: Option<model::ForgeKind>,
    ) -> Result<Option<CodeOwners>, GitError> {
        for &(location, syntax) in codeowners::locations(forge) {
            if let Some(text) = self.file_at("HEAD", location)? {
                return Ok(Some(CodeOwners::parse(&text, syntax)));
            }
        }
        Ok(None)
    }

    /// Who last changed each of lines `first..=last` of `path` as of commit `sha` (`git blame`,
    /// whitespace-only changes skipped, renames of the file followed); `None` when the file
    /// is not there or has fewer lines.
    pub fn blame(
        &self,
        sha: &str,
        path: &str,
        first: u32,
        last: u32,
    ) -> Result<Option<Blame>, GitError> {
        check_sha(sha)?;
        if first == 0 || last < first {
            return Ok(None);
        }
        let mut command = self.git();
        // Not `-- <path>`: after `--end-of-options`, blame would read `--` as its file.
        command.args(["blame", "--porcelain", "-w", "-L", &format!("{first},{last}")]).args([
            "--end-of-options",
            sha,
            path,
        ]);
        match run(command, "blame") {
            Ok(out) => Ok(Some(parse_blame(&out))),
            Err(GitError::Failed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every file path in the tree of commit `sha`.
    pub fn files_at(&self, sha: &str) -> Result<Vec<String>, GitError> {
        check_sha(sha)?;
        let mut command = self.git();
        command.args(["ls-tree", "-r", "-z", "--name-only", "--end-of-options", sha]);
        let out = run(command, "ls-tree")?;
        Ok(out.split('\0').filter(|p| !p.is_empty()).map(str::to_owned).collect())
    }

    /// A file's content at a revision (e.g. CODEOWNERS at the default branch).
    pub fn file_at(&self, revision: &str, path: &str) -> Result<Option<String>, GitError> {
        check_revision(revision)?;
        let mut command = self.git();
        command.args(["show", "--end-of-options"]).arg(format!("{revision}:{path}"));
        match run(command, "show") {
            Ok(text) => Ok(Some(text)),
            Err(GitError::Failed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// `git blame` of a range of lines: the commit of each line, and those commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blame {
    /// (line number in the blamed revision, the sha that last changed it), in line order.
    pub lines: Vec<(u32, String)>,
    pub commits: Vec<BlamedCommit>,
}

/// A commit as `git blame` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlamedCommit {
    pub sha: String,
    pub author: Person,
    pub author_time_unix_secs: Option<i64>,
    pub committer_time_unix_secs: Option<i64>,
    pub summary: String,
    /// The file's path in that commit (another one when the file was renamed since).
    pub path: String,
}

/// Reads `git blame --porcelain`: a header `<sha> <source line> <final line> [<count>]` per
/// line, the commit's fields the first time it appears, and the line itself after a tab.
fn parse_blame(out: &str) -> Blame {
    let mut blame = Blame { lines: Vec::new(), commits: Vec::new() };
    let mut current: Option<usize> = None;
    for line in out.lines() {
        if line.starts_with('\t') {
            continue;
        }
        let mut words = line.splitn(4, ' ');
        let first = words.next().unwrap_or_default();
        if first.len() >= 40 && first.bytes().all(|b| b.is_ascii_hexdigit()) {
            let final_line = words.nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
            blame.lines.push((final_line, first.to_owned()));
            let index = match blame.commits.iter().position(|c| c.sha == first) {
                Some(index) => index,
                None => {
                    blame.commits.push(BlamedCommit {
                        sha: first.to_owned(),
                        author: Person::default(),
                        author_time_unix_secs: None,
                        committer_time_unix_secs: None,
                        summary: String::new(),
                        path: String::new(),
                    });
                    blame.commits.len() - 1
                }
            };
            current = Some(index);
            continue;
        }
        let Some(commit) = current.map(|i| &mut blame.commits[i]) else { continue };
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "author" => commit.author.name = Some(value.to_owned()),
            "author-mail" => {
                let email = value.trim_start_matches('<').trim_end_matches('>');
                commit.author.email = (!email.is_empty()).then(|| email.to_owned());
            }
            "author-time" => commit.author_time_unix_secs = value.parse().ok(),
            "committer-time" => commit.committer_time_unix_secs = value.parse().ok(),
            "summary" => commit.summary = value.to_owned(),
            "filename" => commit.path = value.to_owned(),
            _ => {}
        }
    }
    blame
}

fn check_sha(sha: &str) -> Result<(), GitError> {
    if model::looks_like_sha(sha) {
        Ok(())
    } else {
        Err(GitError::BadRevision { revision: sha.to_owned() })
    }
}

/// Refs and shas only: no options, ranges, reflog or path syntax.
fn check_revision(revision: &str) -> Result<(), GitError> {
    let ok = !revision.is_empty()
        && !revision.starts_with('-')
        && !revision.contains("..")
        && !revision.contains("@{")
        && revision
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_' | b'+'));
    if ok { Ok(()) } else { Err(GitError::BadRevision { revision: revision.to_owned() }) }
}

fn run(mut command: Command, args: &str) -> Result<String, GitError> {
    command.stdin(Stdio::null());
    let output =
        command.output().map_err(|source| GitError::Spawn { args: args.into(), source })?;
    if !output.status.success() {
        return Err(GitError::Failed {
            args: args.into(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Reads a unified diff with zero context into files and hunks. Inside a hunk, the header's
/// line counts say how many `-`/`+` lines follow, so content such as `--- x` is never taken
/// for a file header.
fn parse_patch(patch: &str) -> Vec<FileDiff> {
    let mut files: Vec<FileDiff> = Vec::new();
    let mut old_path: Option<String> = None;
    let (mut old_left, mut new_left) = (0u32, 0u32);
    for line in patch.lines() {
        if old_left > 0 || new_left > 0 {
            let hunk = files.last_mut().and_then(|f| f.hunks.last_mut());
            match line.as_bytes().first() {
                Some(b'-') => old_left = old_left.saturating_sub(1),
                Some(b'+') => new_left = new_left.saturating_sub(1),
                _ => continue,
            }
            if let Some(hunk) = hunk
                && hunk.lines.len() < MAX_HUNK_LINES
            {
                hunk.lines.push(line.to_owned());
            }
            continue;
        }
        if line.starts_with("diff --git ") {
            files.push(FileDiff { path: String::new(), old_path: None, hunks: Vec::new() });
            old_path = None;
        } else if let Some(path) = line.strip_prefix("--- ") {
            old_path = path.strip_prefix("a/").map(str::to_owned);
        } else if let Some(path) = line.strip_prefix("+++ ") {
            if let Some(file) = files.last_mut() {
                let new_path = path.strip_prefix("b/").map(str::to_owned);
                file.path = new_path.clone().or(old_path.clone()).unwrap_or_default();
                file.old_path = old_path.clone().filter(|old| Some(old) != new_path.as_ref());
            }
        } else if let Some(rest) = line.strip_prefix("@@ ") {
            if let (Some(file), Some(hunk)) = (files.last_mut(), parse_hunk_header(rest)) {
                (old_left, new_left) = (hunk.old_lines, hunk.new_lines);
                file.hunks.push(hunk);
            }
        } else if let (Some(path), Some(file)) = (line.strip_prefix("rename to "), files.last_mut())
        {
            file.path = path.to_owned();
        } else if let (Some(path), Some(file)) =
            (line.strip_prefix("rename from "), files.last_mut())
        {
            file.old_path = Some(path.to_owned());
        }
    }
    files.retain(|f| !f.path.is_empty());
    files
}

/// `-12,3 +12,4 @@ fn checkout()` (the part after the first `@@ `).
fn parse_hunk_header(rest: &str) -> Option<Hunk> {
    let (ranges, section) = rest.split_once("@@")?;
    let mut parts = ranges.split_whitespace();
    let range = |text: &str, sign: char| -> Option<(u32, u32)> {
        let text = text.strip_prefix(sign)?;
        match text.split_once(',') {
            Some((start, lines)) => Some((start.parse().ok()?, lines.parse().ok()?)),
            None => Some((text.parse().ok()?, 1)),
        }
    };
    let (old_start, old_lines) = range(parts.next()?, '-')?;
    let (new_start, new_lines) = range(parts.next()?, '+')?;
    Some(Hunk {
        old_start,
        old_lines,
        new_start,
        new_lines,
        section: section.trim().to_owned(),
        lines: Vec::new(),
    })
}

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
