//! Ranking on hand-made commits: code paths, trace structure, attributes, priors, bisect.

use super::*;

fn hunk(section: &str, new_start: u32, lines: &[&str]) -> ChangedHunk {
    ChangedHunk {
        new_start,
        new_lines: lines.iter().filter(|l| l.starts_with('+')).count() as u32,
        section: section.into(),
        lines: lines.iter().map(|l| l.to_string()).collect(),
        syntax: None,
    }
}

fn commit(sha: &str, files: Vec<(&str, Vec<ChangedHunk>)>) -> Candidate {
    Candidate {
        sha: sha.into(),
        subject: format!("commit {sha}"),
        files: files
            .into_iter()
            .map(|(path, hunks)| ChangedFile { path: path.into(), hunks })
            .collect(),
        ignored_for_blame: false,
    }
}

fn deploy() -> Vec<Candidate> {
    vec![
        commit("aaa1", vec![("README.md", vec![hunk("", 3, &["-old words", "+new words"])])]),
        commit(
            "bbb2",
            vec![(
                "src/cart/price.py",
                vec![hunk(
                    "def price_cart(cart):",
                    40,
                    &["-    total = sum(cart)", "+    total = slow_sum(cart)", "+    audit(total)"],
                )],
            )],
        ),
        commit(
            "ccc3",
            vec![(
                "src/search/index.py",
                vec![hunk("def reindex():", 10, &["-    pass", "+    rebuild()"])],
            )],
        ),
    ]
}

#[test]
fn the_commit_that_changed_the_slow_function_leads_with_that_reason() {
    let evidence = Evidence {
        operations: vec!["/cart/{id}/price".into()],
        code_locations: vec![CodeLocation {
            function: Some("shop.cart.price_cart".into()),
            file: Some("/app/src/cart/price.py".into()),
            line: Some(41),
            share: 0.9,
        }],
        ..Evidence::default()
    };
    let ranking = rank(&deploy(), &evidence);
    let top = &ranking.suspects[0];
    assert_eq!(top.sha, "bbb2");
    assert!(ranking.separated && ranking.bisect.is_none(), "{ranking:?}");
    assert!(top.score > 0.9, "{top:?}");
    assert!(top.reasons[0].contains("price_cart"), "{:?}", top.reasons);
    assert!(top.reasons.iter().any(|r| r.contains("line 41")), "{:?}", top.reasons);
    let total: f64 = ranking.suspects.iter().map(|s| s.score).sum();
    assert!((total - 1.0).abs() < 1e-9);
}

#[test]
fn a_new_child_call_points_at_the_commit_that_adds_it() {
    let mut commits = deploy();
    commits.push(commit(
        "ddd4",
        vec![(
            "src/orders/list.py",
            vec![hunk(
                "def list_orders():",
                5,
                &["+    for o in orders:", "+        o.items = fetch_inventory(o.id)"],
            )],
        )],
    ));
    let evidence = Evidence {
        child_changes: vec![ChildChange {
            name: "GET inventory".into(),
            before_per_parent: 0.0,
            after_per_parent: 12.0,
        }],
        ..Evidence::default()
    };
    let ranking = rank(&commits, &evidence);
    assert_eq!(ranking.suspects[0].sha, "ddd4");
    assert!(
        ranking.suspects[0].reasons[0].contains("inventory"),
        "{:?}",
        ranking.suspects[0].reasons
    );
}

#[test]
fn a_flag_on_slow_spans_points_at_the_commit_that_reads_it() {
    let mut commits = deploy();
    commits[2].files[0].hunks[0].lines.push("+    if flags.enabled(\"fast_reindex_v2\"):".into());
    let evidence = Evidence {
        slow_attributes: vec![AttributeSkew {
            key: "feature_flag.key".into(),
            value: "fast_reindex_v2".into(),
            slow_share: 0.8,
            fast_share: 0.1,
        }],
        ..Evidence::default()
    };
    assert_eq!(rank(&commits, &evidence).suspects[0].sha, "ccc3");
}

#[test]
fn without_evidence_there_is_no_guess_but_a_bisect_plan() {
    let commits: Vec<Candidate> = (0..8)
        .map(|i| commit(&format!("{i:040}"), vec![("src/x.py", vec![hunk("", 1, &["-a", "+b"])])]))
        .collect();
    let ranking = rank(&commits, &Evidence::default());
    assert!(!ranking.separated);
    let plan = ranking.bisect.unwrap();
    assert_eq!(plan.first_half.len(), 4);
    assert_eq!(plan.max_rounds, 3);
    assert!(plan.text.contains("canary"), "{}", plan.text);
}

#[test]
fn mechanical_commits_count_for_less() {
    let formatting = commit(
        "fff1",
        vec![("src/cart/price.py", vec![hunk("def price_cart(cart):", 40, &["-x=1", "+x = 1"])])],
    );
    let mut ignored = deploy()[1].clone();
    ignored.ignored_for_blame = true;
    let evidence = Evidence {
        code_locations: vec![CodeLocation {
            function: Some("price_cart".into()),
            file: None,
            line: None,
            share: 1.0,
        }],
        ..Evidence::default()
    };
    let (real, _) = score(&deploy()[1], &evidence);
    let (fmt, reasons) = score(&formatting, &evidence);
    let (ign, _) = score(&ignored, &evidence);
    assert!(fmt < real / 2.0 && ign < real / 2.0, "{fmt} {ign} {real}");
    assert!(reasons.iter().any(|(_, r)| r.contains("formatting")));
}

#[test]
fn priors_name_dependency_and_configuration_changes() {
    let c = commit(
        "eee5",
        vec![
            ("Cargo.lock", vec![hunk("", 1, &["-v1", "+v2"])]),
            ("deploy/app.yaml", vec![hunk("", 1, &["-a", "+b"])]),
        ],
    );
    let (_, reasons) = score(&c, &Evidence::default());
    let text: Vec<&str> = reasons.iter().map(|(_, r)| r.as_str()).collect();
    assert!(text.iter().any(|r| r.contains("bumps dependencies")), "{text:?}");
    assert!(text.iter().any(|r| r.contains("configuration")), "{text:?}");
}

#[test]
fn helpers() {
    assert_eq!(common_suffix_components("/app/src/cart/price.py", "src/cart/price.py"), 3);
    assert_eq!(common_suffix_components("price.py", "src/cart/price.py"), 1);
    assert!(
        has_word("x = price_cart(a)", "price_cart") && !has_word("reprice_cart()", "price_cart")
    );
    assert_eq!(words("fetchInventory_v2"), ["fetchinventory_v2", "fetch", "inventory", "v2"]);
    assert!(is_definition_of("pub fn checkout(cart: &Cart) -> Total {", "checkout"));
    assert!(is_definition_of("func (s *Shop) Checkout(ctx context.Context) error {", "Checkout"));
}
