//! Blame on a real repository built with the `git` binary: the enclosing function's last
//! change at a version, a `def` line that never changed, a rename, and the cache.

use mirror::Mirror;
use mirror::testing::{commit_file, git};
use model::CodeLocation;
use views::ChangeSettings;
use views::blame::{BlameCache, Source, blame};

const V1: &str = "\"\"\"Promotions.\"\"\"\nfrom checkout import db\n\n\ndef apply_promotions(cart, codes):\n    promotions = db.load(codes)\n    for promotion in promotions:\n        cart = promotion.apply(cart)\n    return cart\n\n\ndef describe(promotion):\n    return promotion.code\n";
const V2_BODY: &str = "\"\"\"Promotions.\"\"\"\nfrom checkout import db\n\n\ndef apply_promotions(cart, codes):\n    promotions = db.load(codes)\n    for promotion in promotions:\n        if promotion.first_order_only and db.order_history(cart.customer):\n            continue\n        cart = promotion.apply(cart)\n    return cart\n\n\ndef describe(promotion):\n    return promotion.code\n";
const V3_DEF: &str = "\"\"\"Promotions.\"\"\"\nfrom checkout import db\n\n\ndef apply_promotions(cart, codes):\n    promotions = db.load(codes)\n    for promotion in promotions:\n        if promotion.first_order_only and db.order_history(cart.customer):\n            continue\n        cart = promotion.apply(cart)\n    return cart\n\n\ndef describe(promotion, short=False):\n    return promotion.code\n";

fn at(path: &str, line: i64) -> CodeLocation {
    CodeLocation {
        file_path: Some(path.to_owned()),
        function_name: None,
        line_number: Some(line),
        stacktrace: None,
    }
}

#[test]
fn the_newest_change_to_the_enclosing_function_is_the_blame_and_it_is_cached() {
    let up = tempfile::tempdir().unwrap();
    let path = up.path();
    git(path, &["init", "-q", "-b", "main"]);
    let c1 = commit_file(path, "checkout/promotions.py", V1, "Add promotions");
    let c2 = commit_file(path, "checkout/promotions.py", V2_BODY, "Skip first-order promotions");
    let c3 = commit_file(path, "checkout/promotions.py", V3_DEF, "Describe promotions briefly");
    git(path, &["mv", "checkout/promotions.py", "checkout/promos.py"]);
    git(path, &["commit", "-q", "-m", "Rename promotions"]);
    let c4 = git(path, &["rev-parse", "HEAD"]);
    let home = tempfile::tempdir().unwrap();
    let mirror =
        Mirror::open_or_clone(&home.path().join("m.git"), path.to_str().unwrap(), false).unwrap();
    let cache = BlameCache::default();
    let changes = ChangeSettings::default();
    let run = |sha: &str, location: &CodeLocation| {
        let source = Source {
            changes: &changes,
            service: "checkout",
            mirror: &mirror,
            repository: "shop",
            sha,
        };
        blame(&cache, &source, location)
    };

    // The span names the `def` line (5), unchanged since c1; the body changed in c2.
    let blamed = run(&c3, &at("checkout/promotions.py", 5)).unwrap();
    assert_eq!(blamed.commit.sha, c2, "the body's change, not the def line's commit");
    assert_eq!(blamed.commit.summary, "Skip first-order promotions");
    assert_eq!((blamed.extent.first_line, blamed.extent.last_line), (5, 11));
    assert!(blamed.whole_function);
    assert_eq!(blamed.changed_lines, vec![8, 9]);
    // Line by line: each line's commit and code, as `git blame` shows them.
    let by_line: Vec<(u32, &str)> =
        blamed.by_line.iter().map(|l| (l.line, l.sha.as_str())).collect();
    assert_eq!(by_line, [(5, &*c1), (6, &c1), (7, &c1), (8, &c2), (9, &c2), (10, &c1), (11, &c1)]);
    assert_eq!(
        blamed.by_line[3].code,
        "        if promotion.first_order_only and db.order_history(cart.customer):"
    );
    let mut named: Vec<&str> = blamed.line_commits.iter().map(|c| c.summary.as_str()).collect();
    named.sort_unstable();
    assert_eq!(named, ["Add promotions", "Skip first-order promotions"]);

    // Before the change, the same function's blame is the commit that wrote it.
    assert_eq!(run(&c1, &at("checkout/promotions.py", 5)).unwrap().commit.sha, c1);

    // A change to a function's `def` line alone is that function's blame.
    let describe = run(&c3, &at("checkout/promotions.py", 15)).unwrap();
    assert_eq!(describe.commit.sha, c3);
    assert_eq!(describe.changed_lines, vec![14]);

    // After a rename the lines keep their history; by function name, with a deployed path.
    let renamed = CodeLocation {
        file_path: Some("/srv/app/checkout/promos.py".into()),
        function_name: Some("checkout.promos.apply_promotions".into()),
        line_number: None,
        stacktrace: None,
    };
    let blamed = run(&c4, &renamed).unwrap();
    assert_eq!(blamed.commit.sha, c2);
    assert_eq!(blamed.path, "checkout/promos.py");

    // Code the version does not have is said, not guessed.
    let missing = run(&c1, &at("checkout/promos.py", 5)).unwrap_err();
    assert!(missing.contains("is not a file of `shop`"), "{missing}");
    let unknown = CodeLocation { line_number: None, ..at("checkout/promotions.py", 0) };
    assert!(run(&c1, &unknown).unwrap_err().contains("names no line"));

    // Each distinct location is blamed once.
    let computed = cache.computed();
    for _ in 0..50 {
        run(&c3, &at("checkout/promotions.py", 5)).unwrap();
    }
    assert_eq!(cache.computed(), computed);
}
