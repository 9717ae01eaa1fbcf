//! Attribution that reads code, on real repositories in five languages: a comment on the
//! slow function ranks below a change to its body, a comment appended after the last
//! function is not credited to it, and a moved function is not a changed one.

use analysis::suspects::{ChangeKind, CodeLocation, Evidence, rank};
use mirror::Mirror;
use mirror::testing::{commit_file, git};

use super::candidates;

/// A language's file: the slow function `total` (last in the file), its base text, a
/// comment-only edit inside it, and a body change.
struct Case {
    path: &'static str,
    function: &'static str,
    base: &'static str,
    comment: (&'static str, &'static str),
    body: (&'static str, &'static str),
    appended_comment: &'static str,
}

const CASES: &[Case] = &[
    Case {
        path: "shop/cart.py",
        function: "shop.cart.total",
        base: "import tax\n\n\ndef describe(cart):\n    return str(cart)\n\n\ndef total(cart):\n    amount = sum(cart.items)\n    return amount\n",
        comment: ("def total(cart):", "def total(cart):  # noqa: D103"),
        body: ("    return amount\n", "    audit_log.write(cart)\n    return amount\n"),
        appended_comment: "# TODO: cache totals\n",
    },
    Case {
        path: "cart/cart.go",
        function: "cart.total",
        base: "package cart\n\nfunc describe(c Cart) string {\n\treturn c.String()\n}\n\nfunc total(c Cart) int {\n\tamount := sum(c.Items)\n\treturn amount\n}\n",
        comment: (
            "\tamount := sum(c.Items)",
            "\t// Sum the items first.\n\tamount := sum(c.Items)",
        ),
        body: ("\treturn amount\n", "\tauditLog.Write(c)\n\treturn amount\n"),
        appended_comment: "// TODO: cache totals\n",
    },
    Case {
        path: "src/main/java/shop/Cart.java",
        function: "shop.Cart.total",
        base: "package shop;\n\nclass Cart {\n  String describe() {\n    return toString();\n  }\n\n  int total() {\n    int amount = sum(items);\n    return amount;\n  }\n}\n",
        comment: ("    int amount = sum(items);", "    int amount = sum(items); // all items"),
        body: ("    return amount;\n", "    auditLog.write(this);\n    return amount;\n"),
        appended_comment: "// TODO: cache totals\n",
    },
    Case {
        path: "src/cart.ts",
        function: "total",
        base: "export function describe(cart: Cart): string {\n  return String(cart);\n}\n\nexport function total(cart: Cart): number {\n  const amount = sum(cart.items);\n  return amount;\n}\n",
        comment: (
            "export function total(cart: Cart): number {",
            "/** The cart's total. */\nexport function total(cart: Cart): number {",
        ),
        body: ("  return amount;\n", "  auditLog.write(cart);\n  return amount;\n"),
        appended_comment: "// TODO: cache totals\n",
    },
    Case {
        path: "src/cart.rs",
        function: "shop::cart::total",
        base: "pub fn describe(cart: &Cart) -> String {\n    cart.to_string()\n}\n\npub fn total(cart: &Cart) -> u64 {\n    let amount = sum(&cart.items);\n    amount\n}\n",
        comment: (
            "pub fn total(cart: &Cart) -> u64 {",
            "/// The cart's total.\npub fn total(cart: &Cart) -> u64 {",
        ),
        body: ("    amount\n}\n", "    audit_log::write(cart);\n    amount\n}\n"),
        appended_comment: "// TODO: cache totals\n",
    },
];

#[test]
fn comments_rank_below_the_body_change_in_five_languages() {
    for case in CASES {
        let up = tempfile::tempdir().unwrap();
        let dir = up.path();
        git(dir, &["init", "-q", "-b", "main"]);
        let base = commit_file(dir, case.path, case.base, "Start");
        let commented = case.base.replacen(case.comment.0, case.comment.1, 1);
        commit_file(dir, case.path, &commented, "Document total");
        let slow = commented.replacen(case.body.0, case.body.1, 1);
        let culprit = commit_file(dir, case.path, &slow, "Audit every total");
        let head =
            commit_file(dir, case.path, &format!("{slow}{}", case.appended_comment), "Note a TODO");

        let home = tempfile::tempdir().unwrap();
        let mirror =
            Mirror::open_or_clone(&home.path().join("m.git"), dir.to_str().unwrap(), false)
                .unwrap();
        let commits = mirror.range(Some(&base), &head, 100).unwrap();
        assert_eq!(commits.len(), 3, "{}", case.path);
        let candidates = candidates(&mirror, &commits);
        let evidence = Evidence {
            operations: vec!["/checkout".into()],
            code_locations: vec![CodeLocation {
                function: Some(case.function.into()),
                file: Some(case.path.into()),
                line: None,
                share: 0.6,
            }],
            ..Evidence::default()
        };
        let ranking = rank(&candidates, &evidence);
        let top = &ranking.suspects[0];
        assert_eq!(top.sha, culprit, "{}: {ranking:#?}", case.path);
        assert!(
            top.reasons[0].contains("the function the slow spans run"),
            "{}: {top:?}",
            case.path
        );
        for other in &ranking.suspects[1..] {
            assert!(
                !other
                    .reasons
                    .iter()
                    .any(|r| r.starts_with("changes `")
                        && r.contains("the function the slow spans run")),
                "{}: no code-path credit for a comment: {other:?}",
                case.path
            );
            assert!(other.score < 0.2, "{}: {ranking:#?}", case.path);
        }
    }
}

#[test]
fn the_phabricator_revert_uses_commands_current_arcanist_has() {
    let text = super::phabricator_revert("D12");
    assert!(text.contains("arc diff --create HEAD^") && text.contains("D12"), "{text}");
    assert!(!text.contains("backout"), "Arcanist has had no `backout` since 2020: {text}");
}

#[test]
fn a_moved_function_is_not_a_changed_one() {
    let up = tempfile::tempdir().unwrap();
    let dir = up.path();
    git(dir, &["init", "-q", "-b", "main"]);
    let old = "def a():\n    return 1\n\n\ndef b(x):\n    y = x * 2\n    return y\n";
    let base = commit_file(dir, "m.py", old, "Start");
    let new = "def b(x):\n    y = x * 2\n    return y\n\n\ndef a():\n    return 1\n";
    let head = commit_file(dir, "m.py", new, "Put b first");
    let home = tempfile::tempdir().unwrap();
    let mirror =
        Mirror::open_or_clone(&home.path().join("m.git"), dir.to_str().unwrap(), false).unwrap();
    let commits = mirror.range(Some(&base), &head, 10).unwrap();
    let candidates = candidates(&mirror, &commits);
    let kinds: Vec<ChangeKind> = candidates[0].files[0]
        .hunks
        .iter()
        .map(|h| h.syntax.as_ref().expect("Python is parsed").kind)
        .collect();
    assert!(!kinds.is_empty(), "{candidates:?}");
    assert!(kinds.iter().all(|k| !k.changes_code()), "{kinds:?}");
}
