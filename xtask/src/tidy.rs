//! Tidy checks, run with the other tests: every Rust file says what it is for, the crate
//! boundaries in ARCHITECTURE.md hold (the dependencies each crate may have, and the crate
//! graph points down), no module imports a module that imports it back, and the documents in
//! `docs/` cite only what the repository holds.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    // Read at run time: cargo sets it for tests, and a compiled-in path goes stale when a
    // shared target directory serves checkouts at different paths.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("tests run under cargo");
    Path::new(&manifest_dir).parent().unwrap().to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    rust_files(&root().join("xtask"), &mut files);
    let missing: Vec<_> =
        files.iter().filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!")).collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` header saying what they are for: {missing:?}"
    );
}

#[test]
fn documents_cite_only_what_the_repository_holds() {
    // The planning documents and issue tracker live outside the repository; a reader of
    // `docs/` has neither.
    let outside = ["PRODUCT.md", "STYLE.md", "shared/", "research/", "§", "issue "];
    let mut cited = Vec::new();
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        for (number, line) in text.lines().enumerate() {
            for word in outside.iter().filter(|w| line.contains(*w)) {
                cited.push(format!("{}:{}: `{word}`", path.display(), number + 1));
            }
        }
    }
    assert!(cited.is_empty(), "documents in docs/ cite what is not in the repository: {cited:?}");
}

/// The `[dependencies]` of a crate, by name.
fn dependencies(krate: &str) -> Vec<String> {
    let manifest =
        std::fs::read_to_string(root().join("crates").join(krate).join("Cargo.toml")).unwrap();
    let section = manifest.split("[dependencies]").nth(1).unwrap_or("");
    let section = section.split("\n[").next().unwrap();
    section
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(['.', '=', ' ']).next().unwrap().to_owned())
        .collect()
}

#[test]
fn crate_boundaries_hold() {
    // Pure crates depend on nothing but other pure crates: no IO, clock, runtime or SQL.
    for (pure, allowed) in [("model", &[][..]), ("analysis", &["model"][..])] {
        let deps = dependencies(pure);
        assert!(
            deps.iter().all(|d| allowed.contains(&d.as_str())),
            "{pure} may depend only on {allowed:?}: {deps:?}"
        );
    }
    // Signatures: forge webhooks (`forge`) and the audit chain (`auth`); tokens: `auth`.
    let owners: &[(&[&str], &[&str])] = &[
        (&["otlp"], &["opentelemetry-proto", "prost"]),
        (&["store"], &["rusqlite"]),
        (&["edge", "mcp", "server"], &["axum", "tonic"]),
        (&["forge", "auth"], &["hmac"]),
        (&["auth"], &["jsonwebtoken"]),
        (&["syntax"], &["tree-sitter"]),
    ];
    // Views are values: no runtime, no HTTP, no templates. Pages render views: no store.
    for (krate, forbidden) in [
        ("views", &["tokio", "reqwest", "axum", "askama"][..]),
        ("web", &["tokio", "reqwest", "axum", "store"][..]),
        ("jobs", &["axum", "askama"][..]),
    ] {
        let deps = dependencies(krate);
        for dep in forbidden {
            assert!(!deps.iter().any(|d| d == dep), "`{krate}` depends on `{dep}`");
        }
    }
    // `syntax` reads texts it is given: no runtime, IO, HTTP, SQL or clock crates.
    let syntax = dependencies("syntax");
    for forbidden in ["tokio", "axum", "reqwest", "rusqlite", "jiff", "mirror", "store"] {
        assert!(!syntax.iter().any(|d| d == forbidden), "`syntax` depends on `{forbidden}`");
    }
    // `shapes` is the API's contract: types and their words, on serde and jiff alone.
    let shapes = dependencies("shapes");
    assert!(
        shapes.iter().all(|d| ["serde", "serde_json", "jiff"].contains(&d.as_str())),
        "`shapes` may depend only on serde, serde_json and jiff: {shapes:?}"
    );
    // `auth` is pure apart from the random source: no runtime, HTTP, SQL or clock crates.
    let auth = dependencies("auth");
    for forbidden in ["tokio", "axum", "reqwest", "rusqlite", "jiff"] {
        assert!(!auth.iter().any(|d| d == forbidden), "`auth` depends on `{forbidden}`");
    }
    for krate in workspace_crates() {
        let krate = krate.as_str();
        let deps = dependencies(krate);
        for (owner, owned) in owners {
            for dep in *owned {
                let allowed = owner.contains(&krate);
                assert!(
                    allowed || !deps.iter().any(|d| d == dep),
                    "`{krate}` depends on `{dep}`, which only {owner:?} may use"
                );
            }
        }
    }
}

/// The workspace's crate graph, bottom to top: each crate and the workspace crates it may
/// depend on. A crate missing here, or an edge not listed, fails `crate_graph_points_down`.
const CRATE_GRAPH: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("auth", &[]),
    ("analysis", &["model"]),
    ("otlp", &["model"]),
    ("forge", &["model"]),
    ("mirror", &["model"]),
    ("syntax", &["analysis"]),
    ("traceql", &["model"]),
    ("store", &["model", "analysis", "auth"]),
    ("testbed", &[]),
    ("eval", &["model", "analysis", "syntax"]),
    ("shapes", &[]),
    ("views", &["model", "analysis", "auth", "forge", "mirror", "store", "shapes"]),
    ("jobs", &["model", "analysis", "forge", "mirror", "syntax", "store", "shapes", "views"]),
    ("web", &["model", "analysis", "auth", "shapes", "views"]),
    ("compat", &["model", "otlp", "store", "traceql", "views"]),
    ("edge", &["analysis", "auth", "otlp", "store", "shapes", "views", "jobs", "web", "compat"]),
    ("mcp", &["model", "auth", "store", "shapes", "views", "jobs", "edge"]),
    (
        "server",
        &[
            "model", "analysis", "auth", "otlp", "forge", "mirror", "store", "shapes", "views",
            "jobs", "web", "compat", "edge", "mcp",
        ],
    ),
    ("config", &["model", "analysis", "auth", "otlp", "forge", "store", "server"]),
    ("spanblame", &["model", "analysis", "auth", "otlp", "forge", "store", "server", "config"]),
];

/// The edges of `deps` (crate → its workspace dependencies) that `graph` does not allow.
fn upward_edges(graph: &[(&str, &[&str])], deps: &[(String, Vec<String>)]) -> Vec<String> {
    let workspace: Vec<&str> = graph.iter().map(|(name, _)| *name).collect();
    let mut wrong = Vec::new();
    for (krate, needs) in deps {
        let Some((_, allowed)) = graph.iter().find(|(name, _)| name == krate) else {
            wrong.push(format!("`{krate}` has no row in CRATE_GRAPH: say what it may depend on"));
            continue;
        };
        for need in needs.iter().filter(|n| workspace.contains(&n.as_str())) {
            if !allowed.contains(&need.as_str()) {
                wrong.push(format!(
                    "`{krate}` depends on `{need}`, which CRATE_GRAPH does not allow"
                ));
            }
        }
    }
    wrong
}

fn workspace_crates() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn crate_graph_points_down() {
    let deps: Vec<(String, Vec<String>)> =
        workspace_crates().into_iter().map(|c| (c.clone(), dependencies(&c))).collect();
    let wrong = upward_edges(CRATE_GRAPH, &deps);
    assert!(wrong.is_empty(), "the crate graph is the architecture diagram: {wrong:#?}");
}

#[test]
fn an_upward_crate_edge_is_refused() {
    let deps = vec![
        ("views".to_owned(), vec!["store".to_owned(), "server".to_owned()]),
        ("newcomer".to_owned(), vec!["model".to_owned()]),
        ("web".to_owned(), vec!["views".to_owned(), "askama".to_owned()]),
    ];
    assert_eq!(
        upward_edges(CRATE_GRAPH, &deps),
        vec![
            "`views` depends on `server`, which CRATE_GRAPH does not allow".to_owned(),
            "`newcomer` has no row in CRATE_GRAPH: say what it may depend on".to_owned(),
        ]
    );
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let mut found = Vec::new();
    for krate in workspace_crates() {
        let src = root().join("crates").join(&krate).join("src");
        for cycle in crate::layers::cycles(&crate::layers::module_graph(&src)) {
            found.push(format!("{krate}: {}", cycle.join(" ↔ ")));
        }
    }
    let xtask = crate::layers::module_graph(&root().join("xtask").join("src"));
    found.extend(crate::layers::cycles(&xtask).into_iter().map(|c| format!("xtask: {c:?}")));
    assert!(
        found.is_empty(),
        "modules that import each other (move what both need into a module below them): {found:#?}"
    );
}

#[test]
fn pages_never_open_the_store() {
    // `web` reaches data only through `views`; its manifest cannot name `store`, and its code
    // does not reach for the context's store handle either.
    let mut files = Vec::new();
    rust_files(&root().join("crates/web/src"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains(".store"), "{} reads the store; ask a view", file.display());
    }
}
