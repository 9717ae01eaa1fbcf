//! Tidy checks, run with the other tests: every Rust file says what it is for, and the crate
//! boundaries in ARCHITECTURE.md hold (the dependencies each crate may have).

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
        (&["server"], &["axum", "tonic"]),
        (&["forge", "auth"], &["hmac"]),
        (&["auth"], &["jsonwebtoken"]),
    ];
    // `auth` is pure apart from the random source: no runtime, HTTP, SQL or clock crates.
    let auth = dependencies("auth");
    for forbidden in ["tokio", "axum", "reqwest", "rusqlite", "jiff"] {
        assert!(!auth.iter().any(|d| d == forbidden), "`auth` depends on `{forbidden}`");
    }
    for krate in
        ["model", "analysis", "otlp", "forge", "mirror", "store", "auth", "server", "spanblame"]
    {
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
