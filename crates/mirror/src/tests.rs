//! Mirrors of real repositories built with the `git` binary: ranges across a merge, changed
//! files and hunks, tags as versions, a force-push, and refusal of option-like revisions.

use model::FileChangeKind;
use proptest::prelude::*;

use crate::testing::{commit_file, git};
use crate::{GitError, Mirror, parse_patch};

struct Upstream {
    dir: tempfile::TempDir,
    c1: String,
    c2: String,
    c3: String,
    merge: String,
}

/// main: c1 (tag v1.0.0) -> c3 -> merge(feature: c2) (tag v1.1.0)
fn upstream() -> Upstream {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    git(path, &["init", "-q", "-b", "main"]);
    let c1 = commit_file(path, "src/cart.rs", "fn total() {\n    1\n}\n", "add cart");
    git(path, &["tag", "v1.0.0"]);
    git(path, &["checkout", "-q", "-b", "feature"]);
    let c2 = commit_file(
        path,
        "src/cart.rs",
        "fn total() {\n    cache();\n    1\n}\n",
        "cache cart totals\n\nDifferential Revision: https://phab.example.com/D7",
    );
    git(path, &["checkout", "-q", "main"]);
    let c3 = commit_file(path, "README.md", "# cart\n", "add readme");
    git(path, &["merge", "-q", "--no-ff", "-m", "Merge branch 'feature'", "feature"]);
    let merge = git(path, &["rev-parse", "HEAD"]);
    git(path, &["tag", "-a", "v1.1.0", "-m", "release 1.1.0"]);
    Upstream { dir, c1, c2, c3, merge }
}

#[test]
fn ranges_files_hunks_and_tags_between_two_deploys() {
    let up = upstream();
    let home = tempfile::tempdir().unwrap();
    let mirror = Mirror::open_or_clone(
        &home.path().join("cart.git"),
        up.dir.path().to_str().unwrap(),
        false,
    )
    .unwrap();
    // Versions resolve through tags (annotated or not, with or without the `v`).
    assert_eq!(mirror.resolve_version("1.0.0").unwrap(), Some(up.c1.clone()));
    assert_eq!(mirror.resolve_version("v1.1.0").unwrap(), Some(up.merge.clone()));
    assert_eq!(mirror.resolve_version(&up.c3[..10]).unwrap(), Some(up.c3.clone()));
    assert_eq!(mirror.resolve_version("2.0.0").unwrap(), None);

    // Deploy 1.0.0 -> 1.1.0 shipped c2, c3 and the merge; newest first, topologically.
    let range = mirror.range(Some(&up.c1), &up.merge, 100).unwrap();
    let shas: Vec<&str> = range.iter().map(|c| c.sha.as_str()).collect();
    assert_eq!(shas.len(), 3);
    assert_eq!(shas[0], up.merge);
    assert!(shas.contains(&up.c2.as_str()) && shas.contains(&up.c3.as_str()));
    let merge = &range[0];
    assert_eq!(merge.parents, vec![up.c3.clone(), up.c2.clone()]);
    // Against its first parent, the merge brought in the feature's change.
    assert_eq!(merge.files.len(), 1);
    assert_eq!(merge.files[0].path, "src/cart.rs");
    let c2 = range.iter().find(|c| c.sha == up.c2).unwrap();
    assert_eq!(c2.subject(), "cache cart totals");
    assert!(c2.message.contains("Differential Revision: https://phab.example.com/D7"));
    assert_eq!(c2.author.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(c2.committer.email.as_deref(), Some("ci@example.com"));
    assert_eq!(c2.time_unix_secs, Some(1_767_225_600));
    assert_eq!(c2.files[0].kind, FileChangeKind::Modified);
    let c3 = range.iter().find(|c| c.sha == up.c3).unwrap();
    assert_eq!(c3.files[0].kind, FileChangeKind::Added);

    let hunks = mirror.hunks(&up.c2).unwrap();
    assert_eq!(hunks.len(), 1);
    assert_eq!(hunks[0].path, "src/cart.rs");
    let hunk = &hunks[0].hunks[0];
    assert_eq!((hunk.new_start, hunk.new_lines, hunk.old_lines), (2, 1, 0));
    assert_eq!(hunk.lines, vec!["+    cache();"]);
    // A root commit's hunks are its whole files.
    assert_eq!(mirror.hunks(&up.c1).unwrap()[0].hunks[0].new_lines, 3);

    // What a deploy of the merge contains: its whole history, feature branch included.
    assert!(mirror.is_ancestor(&up.c2, &up.merge).unwrap());
    assert!(mirror.is_ancestor(&up.merge, &up.merge).unwrap());
    assert!(!mirror.is_ancestor(&up.c2, &up.c3).unwrap());
    assert!(!mirror.is_ancestor(&up.merge, &up.c1).unwrap());
    assert!(mirror.is_ancestor(&"0".repeat(40), &up.merge).is_err(), "an unknown commit");

    assert_eq!(mirror.file_at("main", "README.md").unwrap().as_deref(), Some("# cart\n"));
    assert_eq!(mirror.file_at("main", "CODEOWNERS").unwrap(), None);
}

#[test]
fn a_force_push_rewrites_what_the_mirror_reports() {
    let up = upstream();
    let home = tempfile::tempdir().unwrap();
    let source = up.dir.path().to_str().unwrap();
    let mirror = Mirror::open_or_clone(&home.path().join("cart.git"), source, false).unwrap();
    assert_eq!(mirror.resolve("main").unwrap(), Some(up.merge.clone()));

    // Upstream drops the merge and pushes a different commit instead.
    git(up.dir.path(), &["reset", "-q", "--hard", &up.c3]);
    let rewritten =
        commit_file(up.dir.path(), "src/cart.rs", "fn total() {\n    2\n}\n", "fix total");
    git(up.dir.path(), &["branch", "-q", "-D", "feature"]);
    mirror.fetch().unwrap();
    assert_eq!(mirror.resolve("main").unwrap(), Some(rewritten.clone()));
    assert_eq!(mirror.resolve("feature").unwrap(), None, "deleted branches are pruned");
    let range = mirror.range(Some(&up.c1), &rewritten, 100).unwrap();
    let shas: Vec<&str> = range.iter().map(|c| c.sha.as_str()).collect();
    assert_eq!(shas, vec![rewritten.as_str(), up.c3.as_str()]);

    // Opening again reuses the mirror.
    let again = Mirror::open_or_clone(&home.path().join("cart.git"), source, false).unwrap();
    assert_eq!(again.resolve("main").unwrap(), Some(rewritten));
}

#[test]
fn option_like_revisions_never_reach_git() {
    let up = upstream();
    let mirror = Mirror::open_local(up.dir.path());
    for revision in ["--output=/tmp/x", "HEAD@{1}", "a..b", "main:secret", ""] {
        assert!(
            matches!(mirror.resolve(revision), Err(GitError::BadRevision { .. })),
            "{revision}"
        );
    }
    assert!(matches!(mirror.range(None, "main", 10), Err(GitError::BadRevision { .. })));
    assert!(mirror.resolve_version("--help").unwrap().is_none());
}

#[test]
fn removed_lines_that_look_like_headers_stay_hunk_content() {
    let patch = "diff --git a/q.sql b/q.sql\n--- a/q.sql\n+++ b/q.sql\n@@ -1,2 +1 @@ select\n--- old comment\n-+ weird\n+-- new comment\n";
    let files = parse_patch(patch);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].path, "q.sql");
    assert_eq!(files[0].hunks[0].lines, vec!["--- old comment", "-+ weird", "+-- new comment"]);
    assert_eq!(files[0].hunks[0].section, "select");
}

proptest! {
    #[test]
    fn patch_parsing_never_panics(text in "(diff --git a/x b/x\n|--- a/x\n|\\+\\+\\+ b/x\n|@@ -[0-9,]{0,5} \\+[0-9,]{0,5} @@.{0,5}\n|[-+ ].{0,8}\n|rename (from|to) y\n){0,12}") {
        let _ = parse_patch(&text);
    }
}

#[test]
fn blame_names_who_last_changed_each_line_and_follows_a_rename() {
    let up = tempfile::tempdir().unwrap();
    let path = up.path();
    git(path, &["init", "-q", "-b", "main"]);
    let first = "def apply(order):\n    return order\n\n\ndef total(order):\n    return 0\n";
    let c1 = commit_file(path, "checkout/promotions.py", first, "add promotions");
    let second = "def apply(order):\n    history = load(order)\n    return order\n\n\ndef total(order):\n    return 0\n";
    let c2 = commit_file(path, "checkout/promotions.py", second, "look up the order history");
    git(path, &["mv", "checkout/promotions.py", "checkout/promos.py"]);
    git(path, &["commit", "-q", "-m", "rename promotions"]);
    let c3 = git(path, &["rev-parse", "HEAD"]);
    let home = tempfile::tempdir().unwrap();
    let mirror =
        Mirror::open_or_clone(&home.path().join("m.git"), path.to_str().unwrap(), false).unwrap();

    let blame = mirror.blame(&c3, "checkout/promos.py", 1, 3).unwrap().unwrap();
    assert_eq!(blame.lines, vec![(1, c1.clone()), (2, c2.clone()), (3, c1.clone())]);
    let newest = blame.commits.iter().find(|c| c.sha == c2).unwrap();
    assert_eq!(newest.summary, "look up the order history");
    assert_eq!(newest.author.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(newest.author.email.as_deref(), Some("ada@example.com"));
    // The lines kept their history across the rename; the old path is named.
    assert_eq!(newest.path, "checkout/promotions.py");
    assert!(newest.author_time_unix_secs.is_some());

    // At the older version, the same range is the file before the change.
    let before = mirror.blame(&c1, "checkout/promotions.py", 1, 2).unwrap().unwrap();
    assert!(before.lines.iter().all(|(_, sha)| *sha == c1));
    // A path or range the version does not have is `None`, not an error.
    assert_eq!(mirror.blame(&c1, "checkout/promos.py", 1, 2).unwrap(), None);
    assert_eq!(mirror.blame(&c1, "checkout/promotions.py", 40, 50).unwrap(), None);
    assert!(mirror.files_at(&c3).unwrap().contains(&"checkout/promos.py".to_owned()));
    assert!(mirror.blame("-L1", "x", 1, 1).is_err(), "option-like revisions never reach git");
}

#[test]
fn reverts_apply_newest_first_or_name_the_conflicting_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    git(path, &["init", "-q", "-b", "main"]);
    commit_file(path, "src/tax.rs", "fn rate() -> u32 {\n    20\n}\n", "add tax");
    let slow = commit_file(path, "src/cart.rs", "fn total() {\n    slow();\n}\n", "slow cart");
    let slower =
        commit_file(path, "src/cart.rs", "fn total() {\n    slow();\n    slower();\n}\n", "slower");
    let unrelated = commit_file(path, "README.md", "# shop\n", "readme");
    let mirror = Mirror::open_local(path);

    // Two suspects given oldest first are undone newest first; the readme stays.
    let both = mirror.revert("main", &[slow.clone(), slower.clone()]).unwrap().unwrap();
    assert_eq!(both.commits, [slower.clone(), slow.clone()]);
    assert_eq!(both.onto, unrelated);
    assert!(both.diff.contains("diff --git a/src/cart.rs b/src/cart.rs"), "{}", both.diff);
    assert!(both.diff.contains("deleted file mode"), "cart.rs did not exist before: {}", both.diff);
    assert!(!both.diff.contains("README"), "{}", both.diff);
    // The tree is the head's with both undone: committing it is the revert.
    let files = git(path, &["ls-tree", "--name-only", "-r", &both.tree]);
    assert_eq!(files.lines().collect::<Vec<_>>(), ["README.md", "src/tax.rs"]);

    // One suspect whose lines a later commit changed again: a conflict, naming the file.
    let refused = mirror.revert("main", std::slice::from_ref(&slow)).unwrap().unwrap_err();
    assert_eq!(
        refused,
        crate::RevertRefusal::Conflict { commit: slow.clone(), files: vec!["src/cart.rs".into()] }
    );
    assert!(refused.to_string().contains("conflicts with later changes in src/cart.rs"));

    // Already reverted: nothing to do. An unknown commit is named.
    git(path, &["revert", "--no-edit", &slower]);
    let empty = mirror.revert("main", std::slice::from_ref(&slower)).unwrap().unwrap_err();
    assert!(
        matches!(empty, crate::RevertRefusal::Conflict { .. } | crate::RevertRefusal::Empty { .. }),
        "{empty:?}"
    );
    let unknown = "0123456789abcdef0123456789abcdef01234567".to_owned();
    let refused = mirror.revert("main", std::slice::from_ref(&unknown)).unwrap().unwrap_err();
    assert_eq!(refused, crate::RevertRefusal::Unknown { commit: unknown });
    assert!(mirror.revert("main", &["--upload-pack=x".into()]).is_err(), "never reaches git");
}

#[test]
fn a_revert_becomes_a_commit_on_a_branch_of_the_origin() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.git");
    git(dir.path(), &["init", "-q", "--bare", "-b", "main", up.to_str().unwrap()]);
    let work = dir.path().join("work");
    git(dir.path(), &["clone", "-q", up.to_str().unwrap(), work.to_str().unwrap()]);
    commit_file(&work, "a.txt", "one\n", "one");
    let slow = commit_file(&work, "a.txt", "two\n", "two");
    git(&work, &["push", "-q", "origin", "HEAD:main"]);
    let mirror =
        Mirror::open_or_clone(&dir.path().join("mirror.git"), up.to_str().unwrap(), false).unwrap();
    assert_eq!(mirror.default_branch().unwrap().as_deref(), Some("main"));
    let revert = mirror.revert("HEAD", std::slice::from_ref(&slow)).unwrap().unwrap();
    let first = mirror.commit_revert(&revert, "Revert \"two\"\n", 1_790_000_000).unwrap();
    let again = mirror.commit_revert(&revert, "Revert \"two\"\n", 1_790_000_000).unwrap();
    assert_eq!(first, again, "the same revert is the same commit");
    mirror.push_branch(&first, "spanblame/revert-1").unwrap();
    mirror.push_branch(&first, "spanblame/revert-1").unwrap();
    let pushed = git(&up, &["show", "spanblame/revert-1:a.txt"]);
    assert_eq!(pushed, "one");
    assert_eq!(git(&up, &["rev-parse", "spanblame/revert-1^"]), slow);
    assert!(mirror.push_branch(&first, "--delete").is_err());
}
