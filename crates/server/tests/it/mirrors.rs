//! A repository built with the real `git` binary, mirrored by the server's own sync job:
//! deploys list the commits between them, and spans whose version is a tag or a sha come
//! back with that commit.

use axum::http::StatusCode;
use mirror::testing::{commit_file, git};
use serde_json::json;
use server::{ChangeSettings, MirrorSettings, MirrorSource, RepositorySettings, ServiceOwnership};

use crate::support::{SECOND, T0, TestApp};

/// A server whose one repository, `cart`, mirrors the git repository at `up` (owned by
/// `team`, if any), and that repository's settings.
fn mirrored_app(
    up: &std::path::Path,
    mirrors: &std::path::Path,
    team: Option<&str>,
) -> (TestApp, RepositorySettings) {
    let repository = RepositorySettings {
        name: "cart".into(),
        url: Some("https://git.example.com/shop/cart".into()),
        web_url: None,
        forge: Some(model::ForgeKind::Gitea),
        mirror: Some(MirrorSource::Clone(up.to_str().unwrap().to_owned())),
        monogram: None,
    };
    let app = TestApp::with_changes(ChangeSettings {
        repositories: vec![repository.clone()],
        services: vec![ServiceOwnership {
            service: "cart".into(),
            repository: Some("cart".into()),
            path_prefix: None,
            team: team.map(str::to_owned),
            deploy_from: Vec::new(),
        }],
        mirrors: MirrorSettings { dir: mirrors.to_owned(), ..MirrorSettings::default() },
        ..ChangeSettings::default()
    });
    (app, repository)
}

#[tokio::test]
async fn deploys_list_their_range_and_tags_resolve_versions() {
    let upstream = tempfile::tempdir().unwrap();
    let up = upstream.path();
    git(up, &["init", "-q", "-b", "main"]);
    // Gitea's syntax, in Gitea's own place: anchored regular expressions, `\\` escaped.
    let owners = "# owners\ncart\\\\.rs @shop/everyone\ndb\\\\.rs @shop/dba\n";
    commit_file(up, ".gitea/CODEOWNERS", owners, "add owners");
    let c1 = commit_file(up, "cart.rs", "fn total() {}\n", "add cart");
    git(up, &["tag", "v1.0.0"]);
    let c2 = commit_file(
        up,
        "cart.rs",
        "fn total() { cache() }\n",
        "cache totals\n\nDifferential Revision: https://phab.example.com/D7",
    );
    let c3 = commit_file(up, "db.rs", "fn pool() {}\n", "add a pool");
    git(up, &["tag", "v1.1.0"]);

    let mirrors_dir = tempfile::tempdir().unwrap();
    let (app, repository) = mirrored_app(up, mirrors_dir.path(), Some("payments"));
    assert_eq!(server::sync_once(&app.state, &repository).unwrap(), 4, "clones and imports");
    assert_eq!(server::sync_once(&app.state, &repository).unwrap(), 0, "nothing new");

    for (version, started) in [("1.0.0", T0), ("1.1.0", T0 + 1)] {
        let body = json!({"service": "cart", "environment": "prod", "version": version,
            "started_at": jiff::Timestamp::from_nanosecond(started as i128).unwrap().to_string()});
        let (status, answer) = app.post_json("/api/v1/deploys", &body).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let (_, body) = app.get("/api/v1/deploys?service=cart").await;
    let latest = &body["deploys"][0];
    assert_eq!(latest["commit_sha"], c3.as_str(), "{latest}");
    assert_eq!(latest["commit"]["subject"], "add a pool");
    assert_eq!(latest["commit"]["url"], format!("https://git.example.com/shop/cart/commit/{c3}"));
    assert_eq!(latest["range"]["from"], c1.as_str());
    let commits = latest["range"]["commits"].as_array().unwrap();
    let shas: Vec<&str> = commits.iter().map(|c| c["sha"].as_str().unwrap()).collect();
    assert_eq!(shas, vec![c3.as_str(), c2.as_str()]);
    assert_eq!(commits[1]["files"], json!([{"path": "cart.rs", "change": "modified"}]));

    // A push upstream reaches the graph on the next sync.
    let c4 = commit_file(up, "cart.rs", "fn total() { cache(); log() }\n", "log totals");
    assert_eq!(server::sync_once(&app.state, &repository).unwrap(), 1);

    // Spans name versions as tags or shas.
    app.export_span(
        "11111111111111111111111111111111",
        &[("service.name", "cart"), ("service.version", "1.1.0")],
        T0,
    )
    .await;
    app.export_span(
        "22222222222222222222222222222222",
        &[("service.name", "cart"), ("service.version", &c4[..12])],
        T0 + SECOND,
    )
    .await;
    let (_, trace) = app.get("/api/v1/traces/11111111111111111111111111111111").await;
    assert_eq!(trace["spans"][0]["change"]["commit"]["sha"], c3.as_str(), "{trace}");
    assert_eq!(trace["spans"][0]["change"]["owner"], "payments");
    let (_, trace) = app.get("/api/v1/traces/22222222222222222222222222222222").await;
    assert_eq!(trace["spans"][0]["change"]["commit"]["subject"], "log totals", "{trace}");

    // CODEOWNERS from the mirror names the owner of the span's source file; without a
    // matching rule (or a code path) the service's team is the owner.
    let resource =
        [("service.name", "cart"), ("service.version", "1.1.0"), ("code.file.path", "db.rs")];
    app.export_span("33333333333333333333333333333333", &resource, T0).await;
    let (_, trace) = app.get("/api/v1/traces/33333333333333333333333333333333").await;
    assert_eq!(trace["spans"][0]["change"]["owner"], "@shop/dba", "{trace}");

    // Forward impact: c3 shipped in the 1.1.0 deploy.
    let (status, impact) = app.get(&format!("/api/v1/commits/{}/impact", &c3[..8])).await;
    assert_eq!(status, StatusCode::OK, "{impact}");
    assert_eq!(impact["deploys"][0]["version"], "1.1.0");
    assert_eq!(impact["deploys"][0]["shipped_as"], "deploy_commit");
    assert!(impact["deploys"][0]["traces_before"].as_str().unwrap().contains("version=1.0.0"));
    // c2 was never deployed by itself: the 1.1.0 deploy shipped it inside its range, and
    // neither 1.0.0 (before it) nor a later deploy of c4 (which already had it) counts.
    let body = json!({"service": "cart", "environment": "prod", "version": c4, "commit": c4,
        "started_at": jiff::Timestamp::from_nanosecond((T0 + 2) as i128).unwrap().to_string()});
    let (status, answer) = app.post_json("/api/v1/deploys", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, impact) = app.get(&format!("/api/v1/commits/{c2}/impact")).await;
    assert_eq!(status, StatusCode::OK, "{impact}");
    let shipped: Vec<(&str, &str, &str)> = impact["deploys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let field = |key: &str| d[key].as_str().unwrap_or("");
            (field("environment"), field("version"), field("shipped_as"))
        })
        .collect();
    // The spans above (no environment) inferred deploys too; there 1.1.0 came first.
    assert_eq!(
        shipped,
        [("prod", "1.1.0", "in_range"), ("", "1.1.0", "first_known_deploy")],
        "{impact}"
    );
    // c4 shipped in its own deploys only: reported in prod, inferred from spans naming it.
    let (_, impact) = app.get(&format!("/api/v1/commits/{c4}/impact")).await;
    let versions: Vec<&str> = impact["deploys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, [&c4[..12], c4.as_str()], "{impact}");

    // A mirrored commit by its sha: subject, author, the review its message names, owner.
    let resource =
        [("service.name", "cart"), ("service.version", c2.as_str()), ("code.file.path", "cart.rs")];
    app.export_span("44444444444444444444444444444444", &resource, T0).await;
    let (_, trace) = app.get("/api/v1/traces/44444444444444444444444444444444").await;
    let change = &trace["spans"][0]["change"];
    assert_eq!(change["commit"]["subject"], "cache totals", "{change}");
    assert_eq!(change["commit"]["author"], "Ada Lovelace", "{change}");
    assert_eq!(change["review"]["url"], "https://phab.example.com/D7", "{change}");
    assert_eq!(change["owner"], "@shop/everyone", "{change}");
}

#[tokio::test]
async fn a_span_is_blamed_on_the_last_change_to_its_function_not_its_versions_head() {
    let upstream = tempfile::tempdir().unwrap();
    let up = upstream.path();
    git(up, &["init", "-q", "-b", "main"]);
    let v1 = "def total(cart):\n    return sum(cart)\n\n\ndef tax(cart):\n    return 0\n";
    commit_file(up, "cart/prices.py", v1, "add prices");
    let v2 = "def total(cart):\n    cart = [p for p in cart if p > 0]\n    return sum(cart)\n\n\ndef tax(cart):\n    return 0\n";
    let culprit = commit_file(up, "cart/prices.py", v2, "drop free items from totals");
    let head = commit_file(up, "README.md", "# cart\n", "describe the cart");
    git(up, &["tag", "v2.0.0"]);

    let mirrors_dir = tempfile::tempdir().unwrap();
    let (app, repository) = mirrored_app(up, mirrors_dir.path(), None);
    server::sync_once(&app.state, &repository).unwrap();

    let span = |line: &'static str| {
        [
            ("service.name", "cart"),
            ("service.version", "2.0.0"),
            ("code.file.path", "/app/cart/prices.py"),
            ("code.line.number", line),
        ]
    };
    app.export_span("55555555555555555555555555555555", &span("1"), T0).await;
    let (_, trace) = app.get("/api/v1/traces/55555555555555555555555555555555").await;
    let change = &trace["spans"][0]["change"];
    assert_eq!(change["commit"]["sha"], head.as_str(), "built from the version's head: {change}");
    let blame = &change["blame"];
    assert_eq!(blame["sha"], culprit.as_str(), "{change}");
    assert_eq!(blame["subject"], "drop free items from totals");
    assert_eq!(blame["author"], "Ada Lovelace");
    assert_eq!(blame["path"], "cart/prices.py");
    assert_eq!(blame["lines"], "1-3");
    assert_eq!(blame["whole_function"], true);
    assert_eq!(blame["changed_lines"], json!([2]));
    assert_eq!(blame["url"], format!("https://git.example.com/shop/cart/commit/{culprit}"));
    assert!(blame["by_line"].is_null(), "line by line only when asked: {blame}");

    // Line by line, on demand: each line of the function with its commit and code.
    let (status, trace) =
        app.get("/api/v1/traces/55555555555555555555555555555555?blame=lines").await;
    assert_eq!(status, StatusCode::OK, "{trace}");
    let blame = &trace["spans"][0]["change"]["blame"];
    let lines: Vec<(u64, &str, &str)> = blame["by_line"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (l["line"].as_u64().unwrap(), l["sha"].as_str().unwrap(), l["code"].as_str().unwrap())
        })
        .collect();
    let first = blame["by_line"][0]["sha"].as_str().unwrap();
    assert_eq!(
        lines,
        [
            (1, first, "def total(cart):"),
            (2, culprit.as_str(), "    cart = [p for p in cart if p > 0]"),
            (3, first, "    return sum(cart)"),
        ]
    );
    assert_eq!(blame["line_commits"][first]["subject"], "add prices", "{blame}");
    assert_eq!(blame["line_commits"][culprit.as_str()]["author"], "Ada Lovelace");
    let (status, body) = app.get("/api/v1/traces/55555555555555555555555555555555?blame=all").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // The trace page shows it under the span's blame.
    let (status, page, _) = app.get_page("/traces/55555555555555555555555555555555").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Line by line") && page.contains("cart = [p for p in cart if p &#62; 0]"),
        "{page}"
    );

    // Another function of the same file: its own history.
    app.export_span("66666666666666666666666666666666", &span("6"), T0).await;
    let (_, trace) = app.get("/api/v1/traces/66666666666666666666666666666666").await;
    assert_eq!(trace["spans"][0]["change"]["blame"]["subject"], "add prices", "{trace}");

    // A service with no repository says why there is no blame.
    let elsewhere = [("service.name", "search"), ("code.file.path", "search/index.go")];
    app.export_span("77777777777777777777777777777777", &elsewhere, T0).await;
    let (_, trace) = app.get("/api/v1/traces/77777777777777777777777777777777").await;
    let change = &trace["spans"][0]["change"];
    assert!(change["blame"].is_null(), "{change}");
    assert!(change["blame_unavailable"].as_str().unwrap().contains("names no commit"), "{change}");
}
