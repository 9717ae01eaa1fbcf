//! Blame for a span: the most recent change to the code the span runs, at the span's version.
//! The span's code location (`code.file.path`, `code.function.name`, `code.line.number`) is
//! found in the version's tree, widened to the enclosing function (`analysis::code`), and
//! `git blame` over those lines on the mirror names who last changed each; the newest of
//! them is the span's blame. A `def` line that never changes does not hide a body that did.
//!
//! Results are cached per (repository, commit, location): a trace of hundreds of spans costs
//! one blame per distinct location, and the cache is bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use analysis::code::{Extent, function_extent};
use mirror::{Blame, BlamedCommit, Mirror};
use model::CodeLocation;

use crate::settings::ChangeSettings;

/// Entries kept before the cache starts over (each is a few hundred bytes).
const MAX_CACHED: usize = 10_000;

/// The most recent change to a span's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blamed {
    pub commit: BlamedCommit,
    /// The file in the blamed version.
    pub path: String,
    /// The lines blamed: the enclosing function, or the span's line alone.
    pub extent: Extent,
    /// Whether `extent` is the enclosing function (else only the span's line was found).
    pub whole_function: bool,
    /// The lines of `extent` the blamed commit last changed.
    pub changed_lines: Vec<u32>,
    /// Every line of `extent`: who last changed it, and its code (at most
    /// [`MAX_LINE_BYTES`] of it; none past [`MAX_LINES`]).
    pub by_line: Vec<BlamedLine>,
    /// The commits `by_line` names.
    pub line_commits: Vec<BlamedCommit>,
}

/// One line of blamed code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlamedLine {
    pub line: u32,
    pub sha: String,
    pub code: String,
}

/// Lines of a function shown one by one; a longer function keeps its blame, not its text.
pub const MAX_LINES: usize = 400;
/// Bytes of one line's code kept.
pub const MAX_LINE_BYTES: usize = 240;

/// Why a span with a code location has no blame, in words for the page.
pub type NoBlame = String;

/// (repository, commit, the span's path, line, function).
type Key = (String, String, String, Option<i64>, Option<String>);
/// A commit's file paths, by (repository, commit).
type Trees = HashMap<(String, String), Arc<Vec<String>>>;

/// Blames and tree listings already read, by repository and commit.
#[derive(Default)]
pub struct BlameCache {
    blames: Mutex<HashMap<Key, Result<Blamed, NoBlame>>>,
    trees: Mutex<Trees>,
    misses: std::sync::atomic::AtomicU64,
}

impl BlameCache {
    /// How many blames were computed rather than found in the cache (for tests).
    pub fn computed(&self) -> u64 {
        self.misses.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a span's code is read from: its service's repository at the commit of its version.
pub struct Source<'a> {
    pub changes: &'a ChangeSettings,
    pub service: &'a str,
    pub mirror: &'a Mirror,
    pub repository: &'a str,
    pub sha: &'a str,
}

/// The blame of the code at `location` in the source's repository as of its commit.
pub fn blame(
    cache: &BlameCache,
    source: &Source<'_>,
    location: &CodeLocation,
) -> Result<Blamed, NoBlame> {
    let Some(span_path) = location.file_path.as_deref() else {
        return Err("the span names no `code.file.path`".into());
    };
    let key = (
        source.repository.to_owned(),
        source.sha.to_owned(),
        span_path.to_owned(),
        location.line_number,
        location.function_name.clone(),
    );
    if let Some(found) = lock(&cache.blames).get(&key) {
        return found.clone();
    }
    cache.misses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let found = compute(cache, source, span_path, location);
    let mut blames = lock(&cache.blames);
    if blames.len() >= MAX_CACHED {
        blames.clear();
    }
    blames.insert(key, found.clone());
    found
}

fn compute(
    cache: &BlameCache,
    source: &Source<'_>,
    span_path: &str,
    location: &CodeLocation,
) -> Result<Blamed, NoBlame> {
    let Source { changes, service, mirror, repository, sha } = *source;
    let short = sha.get(..10).unwrap_or(sha);
    let tree = tree(cache, mirror, repository, sha)?;
    let prefix = changes.ownership(service).and_then(|o| o.path_prefix.as_deref());
    let Some(path) = file_in_tree(&tree, span_path, prefix) else {
        return Err(format!("`{span_path}` is not a file of `{repository}` at {short}"));
    };
    let text = mirror
        .file_at(sha, &path)
        .map_err(|e| format!("reading `{path}` at {short}: {e}"))?
        .ok_or_else(|| format!("`{path}` is not in `{repository}` at {short}"))?;
    let line = location.line_number.and_then(|l| u32::try_from(l).ok()).filter(|l| *l > 0);
    let function = location.function_name.as_deref();
    let (extent, whole_function) = match function_extent(&path, &text, line, function) {
        Some(extent) => (extent, true),
        None => match line {
            Some(line) => (Extent { first_line: line, last_line: line }, false),
            None => {
                return Err(format!(
                    "no function `{}` found in `{path}` at {short}, and the span names no line",
                    function.unwrap_or("(unnamed)")
                ));
            }
        },
    };
    let blame = mirror
        .blame(sha, &path, extent.first_line, extent.last_line)
        .map_err(|e| format!("blaming `{path}` at {short}: {e}"))?
        .ok_or_else(|| {
            format!("`{path}` has no lines {}-{} at {short}", extent.first_line, extent.last_line)
        })?;
    let commit = newest(mirror, &blame).ok_or_else(|| format!("git blamed no line of `{path}`"))?;
    let changed_lines =
        blame.lines.iter().filter(|(_, by)| *by == commit.sha).map(|(line, _)| *line).collect();
    let source: Vec<&str> = text.lines().collect();
    let by_line = blame
        .lines
        .iter()
        .take(MAX_LINES)
        .map(|(line, sha)| {
            let index = (*line as usize).checked_sub(1);
            let code = index.and_then(|i| source.get(i)).copied().unwrap_or_default();
            let mut end = code.len().min(MAX_LINE_BYTES);
            while !code.is_char_boundary(end) {
                end -= 1;
            }
            BlamedLine { line: *line, sha: sha.clone(), code: code[..end].to_owned() }
        })
        .collect();
    Ok(Blamed {
        commit,
        path,
        extent,
        whole_function,
        changed_lines,
        by_line,
        line_commits: blame.commits,
    })
}

fn tree(
    cache: &BlameCache,
    mirror: &Mirror,
    repository: &str,
    sha: &str,
) -> Result<Arc<Vec<String>>, NoBlame> {
    let key = (repository.to_owned(), sha.to_owned());
    if let Some(files) = lock(&cache.trees).get(&key) {
        return Ok(Arc::clone(files));
    }
    let files = Arc::new(mirror.files_at(sha).map_err(|e| {
        format!("the mirror of `{repository}` cannot list {}: {e}", sha.get(..10).unwrap_or(sha))
    })?);
    let mut trees = lock(&cache.trees);
    if trees.len() >= MAX_CACHED / 100 {
        trees.clear();
    }
    trees.insert(key, Arc::clone(&files));
    Ok(files)
}

/// The repository file a span's path names: the same path, the path under the service's
/// `path_prefix`, the longest repository path the span's path ends with (`/app/checkout/x.py`
/// is `checkout/x.py`), or the only repository path that ends with the span's.
fn file_in_tree(files: &[String], span_path: &str, prefix: Option<&str>) -> Option<String> {
    let path = span_path.trim_start_matches("./").trim_start_matches('/');
    if path.is_empty() {
        return None;
    }
    let has = |candidate: &str| files.iter().any(|f| f == candidate);
    if has(path) {
        return Some(path.to_owned());
    }
    if let Some(prefix) = prefix.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
        let under = format!("{prefix}/{path}");
        if has(&under) {
            return Some(under);
        }
    }
    let longest_suffix = files
        .iter()
        .filter(|f| path.ends_with(f.as_str()) && path[..path.len() - f.len()].ends_with('/'))
        .max_by_key(|f| f.len());
    if let Some(found) = longest_suffix {
        return Some(found.clone());
    }
    let mut ending: Vec<&String> =
        files.iter().filter(|f| f.ends_with(&format!("/{path}"))).collect();
    (ending.len() == 1).then(|| ending.remove(0).clone())
}

/// The blamed commit every other one is an ancestor of; with diverging history (merges), the
/// one committed last.
fn newest(mirror: &Mirror, blame: &Blame) -> Option<BlamedCommit> {
    let commits = &blame.commits;
    let descends_from_all = |c: &BlamedCommit| {
        commits
            .iter()
            .filter(|other| other.sha != c.sha)
            .all(|other| mirror.is_ancestor(&other.sha, &c.sha).unwrap_or(false))
    };
    commits
        .iter()
        .find(|c| descends_from_all(c))
        .or_else(|| commits.iter().max_by_key(|c| c.committer_time_unix_secs))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_paths_are_found_in_the_tree_however_they_are_written() {
        let files: Vec<String> =
            ["checkout/promotions.py", "services/cart/main.go", "a/util.py", "b/util.py"]
                .map(str::to_owned)
                .to_vec();
        let find = |p: &str, prefix: Option<&str>| file_in_tree(&files, p, prefix);
        assert_eq!(find("checkout/promotions.py", None).as_deref(), Some("checkout/promotions.py"));
        assert_eq!(
            find("./checkout/promotions.py", None).as_deref(),
            Some("checkout/promotions.py")
        );
        assert_eq!(
            find("/app/checkout/promotions.py", None).as_deref(),
            Some("checkout/promotions.py")
        );
        assert_eq!(
            find("main.go", Some("services/cart/")).as_deref(),
            Some("services/cart/main.go")
        );
        assert_eq!(find("main.go", None).as_deref(), Some("services/cart/main.go"), "the only one");
        assert_eq!(find("util.py", None), None, "two files end so: no guess");
        assert_eq!(find("/app/xcheckout/promotions.py", None), None, "whole segments only");
        assert_eq!(find("", None), None);
    }
}
