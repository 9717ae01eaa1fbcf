//! Classification of hand-made hunks in each language; the real-repository tests are in
//! `jobs` (through the mirror).

use proptest::prelude::*;

use super::*;

fn one(path: &str, old: &str, new: &str, removed: &[u32], added: &[u32]) -> HunkSyntax {
    let file = FileChange {
        path,
        old_text: Some(old),
        new_text: Some(new),
        hunks: vec![HunkLines { removed: removed.to_vec(), added: added.to_vec() }],
    };
    classify(&[file]).remove(0).expect("a parsed language").remove(0)
}

fn touched(syntax: &HunkSyntax) -> Vec<(&str, bool)> {
    syntax.functions.iter().map(|f| (f.name.as_str(), f.signature_only)).collect()
}

const PY: &str = "def render_product(product):\n    html = template(product)\n    return html\n\n\ndef other():\n    return 1\n";

#[test]
fn python_comments_docstrings_and_layout_change_no_code() {
    // `# noqa` on the def line.
    let noqa = PY.replacen("(product):", "(product):  # noqa: D103", 1);
    let syntax = one("shop/views.py", PY, &noqa, &[1], &[1]);
    assert_eq!(syntax.kind, ChangeKind::CommentsOnly);
    assert_eq!(touched(&syntax), [("render_product", false)]);
    // A comment appended after the last function.
    let appended = format!("{PY}# TODO: cache this\n");
    let syntax = one("shop/views.py", PY, &appended, &[], &[8]);
    assert_eq!(syntax.kind, ChangeKind::CommentsOnly);
    // A docstring.
    let documented =
        PY.replacen("(product):\n", "(product):\n    \"\"\"Render a product page.\"\"\"\n", 1);
    assert_eq!(one("v.py", PY, &documented, &[], &[2]).kind, ChangeKind::CommentsOnly);
    // Re-indentation inside a string-free line: layout only.
    let spaced = PY.replacen("html = template(product)", "html = template( product )", 1);
    assert_eq!(one("v.py", PY, &spaced, &[2], &[2]).kind, ChangeKind::FormattingOnly);
}

#[test]
fn python_body_and_signature_changes_name_their_function() {
    let body =
        PY.replacen("    return html\n", "    audit_log.write(product)\n    return html\n", 1);
    let syntax = one("v.py", PY, &body, &[], &[3]);
    assert_eq!(syntax.kind, ChangeKind::Code);
    assert_eq!(touched(&syntax), [("render_product", false)]);
    let signature = PY.replacen("(product):", "(product, locale=None):", 1);
    let syntax = one("v.py", PY, &signature, &[1], &[1]);
    assert_eq!((syntax.kind, touched(&syntax)), (ChangeKind::Code, vec![("render_product", true)]));
    // A string literal only.
    let strings = PY.replacen("return 1", "return \"one\"", 1);
    assert_eq!(one("v.py", PY, &strings, &[7], &[7]).kind, ChangeKind::Code);
    let old = "def f():\n    return 'a'\n";
    let new = "def f():\n    return 'b'\n";
    assert_eq!(one("v.py", old, new, &[2], &[2]).kind, ChangeKind::StringsOnly);
    // Imports only.
    let old = "import os\n\n\ndef f():\n    return os.sep\n";
    let new = "import os\nimport sys\n\n\ndef f():\n    return os.sep\n";
    assert_eq!(one("v.py", old, new, &[], &[2]).kind, ChangeKind::ImportsOnly);
}

#[test]
fn a_moved_function_keeps_its_identity() {
    let old = "def a():\n    return 1\n\n\ndef b():\n    return 2\n";
    let new = "def b():\n    return 2\n\n\ndef a():\n    return 1\n";
    // `b` removed at the bottom and added at the top, in two hunks.
    let file = FileChange {
        path: "m.py",
        old_text: Some(old),
        new_text: Some(new),
        hunks: vec![
            HunkLines { removed: vec![], added: vec![1, 2, 3, 4] },
            HunkLines { removed: vec![4, 5, 6], added: vec![] },
        ],
    };
    let hunks = classify(&[file]).remove(0).unwrap();
    assert!(hunks.iter().all(|h| h.kind == ChangeKind::MovedOnly), "{hunks:?}");
}

#[test]
fn a_renamed_function_is_a_signature_change_of_both_names() {
    let old = "def total(cart):\n    return sum(cart)\n";
    let new = "def cart_total(cart):\n    return sum(cart)\n";
    let syntax = one("t.py", old, new, &[1], &[1]);
    assert_eq!(syntax.kind, ChangeKind::Code);
    assert_eq!(touched(&syntax), [("total", true), ("cart_total", true)]);
}

#[test]
fn other_languages_find_their_functions() {
    let go = "package cart\n\n// Total sums the cart.\nfunc Total(items []int) int {\n\tsum := 0\n\treturn sum\n}\n";
    let go_body = go.replacen("\treturn sum", "\tsum += tax(items)\n\treturn sum", 1);
    assert_eq!(touched(&one("cart.go", go, &go_body, &[], &[6])), [("Total", false)]);
    let go_doc = go.replacen("sums the cart", "adds up the cart", 1);
    assert_eq!(one("cart.go", go, &go_doc, &[3], &[3]).kind, ChangeKind::CommentsOnly);

    let java =
        "class Cart {\n  int total(int[] items) {\n    int sum = 0;\n    return sum;\n  }\n}\n";
    let java_body = java.replacen("    return sum;", "    sum += tax(items);\n    return sum;", 1);
    assert_eq!(touched(&one("Cart.java", java, &java_body, &[], &[4])), [("total", false)]);
    let java_comment = java.replacen("int sum = 0;", "int sum = 0; // start at zero", 1);
    assert_eq!(one("Cart.java", java, &java_comment, &[3], &[3]).kind, ChangeKind::CommentsOnly);

    let ts =
        "export const total = (items: number[]): number => {\n  let sum = 0;\n  return sum;\n};\n";
    let ts_body = ts.replacen("  return sum;", "  sum += tax(items);\n  return sum;", 1);
    assert_eq!(touched(&one("cart.ts", ts, &ts_body, &[], &[3])), [("total", false)]);

    let rs = "/// Sums.\npub fn total(items: &[u32]) -> u32 {\n    let sum = 0;\n    sum\n}\n";
    let rs_body = rs.replacen("    sum\n", "    sum + tax(items)\n", 1);
    assert_eq!(touched(&one("cart.rs", rs, &rs_body, &[4], &[4])), [("total", false)]);
    let rs_doc = rs.replacen("/// Sums.", "/// Sums the items.", 1);
    assert_eq!(one("cart.rs", rs, &rs_doc, &[1], &[1]).kind, ChangeKind::CommentsOnly);
    let rs_signature = rs.replacen("items: &[u32]", "items: &[u64]", 1);
    assert_eq!(touched(&one("cart.rs", rs, &rs_signature, &[2], &[2])), [("total", true)]);

    let rb = "def total(items)\n  items.sum\nend\n";
    let rb_body = rb.replacen("items.sum", "items.sum + tax(items)", 1);
    assert_eq!(touched(&one("cart.rb", rb, &rb_body, &[2], &[2])), [("total", false)]);
}

#[test]
fn unknown_languages_and_new_files_are_read_as_they_can_be() {
    let file = FileChange {
        path: "Makefile",
        old_text: Some("a:\n"),
        new_text: Some("b:\n"),
        hunks: vec![HunkLines::default()],
    };
    assert_eq!(classify(&[file]), vec![None]);
    let added = FileChange {
        path: "new.py",
        old_text: None,
        new_text: Some("def fresh():\n    return 1\n"),
        hunks: vec![HunkLines { removed: vec![], added: vec![1, 2] }],
    };
    let hunk = classify(&[added]).remove(0).unwrap().remove(0);
    assert_eq!((hunk.kind, touched(&hunk)), (ChangeKind::Code, vec![("fresh", false)]));
}

#[test]
fn unified_hunks_number_their_lines() {
    let lines: Vec<String> = [" a", "-b", "+B", "+C", " d", "\\ No newline at end of file"]
        .iter()
        .map(|l| l.to_string())
        .collect();
    assert_eq!(
        HunkLines::from_unified(10, 20, &lines),
        HunkLines { removed: vec![11], added: vec![21, 22] }
    );
}

proptest! {
    #[test]
    fn any_text_and_any_lines_are_classified_without_panicking(
        old in "[a-z(){}:;=# \\n\"'/*]{0,200}",
        new in "[a-z(){}:;=# \\n\"'/*]{0,200}",
        removed in prop::collection::vec(0u32..30, 0..8),
        added in prop::collection::vec(0u32..30, 0..8),
        path in prop::sample::select(vec!["a.py", "a.go", "a.java", "a.ts", "a.rs", "a.rb", "a.php", "a.cs", "a.js"]),
    ) {
        let file = FileChange {
            path,
            old_text: Some(&old),
            new_text: Some(&new),
            hunks: vec![HunkLines { removed, added }],
        };
        prop_assert!(classify(&[file])[0].is_some());
    }
}
