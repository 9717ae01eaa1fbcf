//! Test support for crates that need real git repositories (feature `testing`): git with a
//! fixed identity and clock, and one-file commits.

use std::path::Path;
use std::process::Command;

/// Runs git in `dir` as author Ada Lovelace, committer CI Bot, at 2026-01-01T00:00:00Z, with
/// no user or system configuration; returns trimmed stdout. Panics when git fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Ada Lovelace")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "CI Bot")
        .env("GIT_COMMITTER_EMAIL", "ci@example.com")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("running git");
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Writes `content` to `path` in the repository at `dir`, commits it with `message`, and
/// returns the new commit's sha.
pub fn commit_file(dir: &Path, path: &str, content: &str, message: &str) -> String {
    let file = dir.join(path);
    std::fs::create_dir_all(file.parent().expect("a file in the repository"))
        .expect("creating the file's directory");
    std::fs::write(file, content).expect("writing the file");
    git(dir, &["add", "--", path]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}
