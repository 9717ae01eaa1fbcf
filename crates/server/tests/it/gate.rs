//! The tagging gate over a real git repository and real spans: `POST /api/v1/gate` passes a
//! reviewed change whose staging spans say their version and commit, fails one without a
//! review (naming the fix), cannot tell for a mapped service with no spans yet (saying why),
//! and refuses malformed requests with a code and a message. A Harbormaster build step gets
//! its answer at once and its result through `harbormaster.sendmessage` (to a recorder that
//! answers as Conduit does), once per build target, and only with the integration's secret.
//! A pull or merge request's new head gets a `spanblame/tagging` commit status on GitHub,
//! Gitea and GitLab (`gate_on_reviews`), once per head.

use axum::http::StatusCode;
use base64::Engine;
use mirror::testing::{commit_file, git};
use model::ForgeKind;
use serde_json::{Value, json};
use server::{
    ChangeSettings, ForgeNotify, Integration, MirrorSettings, MirrorSource, NotifySettings,
    RepositoryForge, RepositorySettings, ServiceOwnership,
};

use crate::recorder::Recorder;
use crate::support::{SECOND, TestApp, fixture};

const SECRET: &[u8] = b"harbormaster-and-herald-secret";

struct Repo {
    reviewed: String,
    unreviewed: String,
}

fn build_repo(dir: &std::path::Path) -> Repo {
    git(dir, &["init", "-q", "-b", "main"]);
    commit_file(dir, "cart/total.py", "def total(c):\n    return 0\n", "Start the cart");
    let reviewed = commit_file(
        dir,
        "cart/total.py",
        "def total(c):\n    return sum(c)\n",
        "Sum the cart\n\nSummary: adds it up.\n\nDifferential Revision: https://phab.example.com/D12",
    );
    let unreviewed =
        commit_file(dir, "cart/total.py", "def total(c):\n    return sum(c) + 1\n", "Add one");
    Repo { reviewed, unreviewed }
}

/// `cart` (owned by payments) and `search` (no spans yet) in `shop`, read in place; `ghost` is
/// not mapped. The gate looks in staging.
fn app(up: &std::path::Path, mirrors: &std::path::Path, api_url: Option<String>) -> TestApp {
    let repository = RepositorySettings {
        name: "shop".into(),
        url: None,
        web_url: Some("https://phab.example.com".into()),
        forge: Some(model::ForgeKind::Phabricator),
        mirror: Some(MirrorSource::Path(up.to_owned())),
        monogram: Some("rSHOP".into()),
    };
    let service = |name: &str, prefix: &str| ServiceOwnership {
        service: name.into(),
        repository: Some("shop".into()),
        path_prefix: Some(prefix.into()),
        team: Some("payments".into()),
        deploy_from: Vec::new(),
    };
    let mut changes = ChangeSettings {
        integrations: vec![Integration {
            name: "phab".into(),
            kind: model::ForgeKind::Phabricator,
            secret: SECRET.to_vec(),
            api_url,
            api_token: Some("api-abcdefghijklmnopqrstuvwxyzab".into()),
        }],
        repositories: vec![repository.clone()],
        services: vec![service("cart", "cart"), service("search", "search")],
        mirrors: MirrorSettings { dir: mirrors.to_owned(), ..MirrorSettings::default() },
        ..ChangeSettings::default()
    };
    changes.gate.environments = vec!["staging".into()];
    let app = TestApp::with_changes(changes);
    server::sync_once(&app.state, &repository).unwrap();
    app
}

async fn gate(app: &TestApp, body: Value) -> (StatusCode, Value) {
    app.post_json("/api/v1/gate", &body).await
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

/// Spans of `cart` from staging at `version`, naming `commit`.
async fn staging_spans(app: &TestApp, version: &str, commit: &str) {
    let now = app.clock.get();
    let resource = [
        ("service.name", "cart"),
        ("service.version", version),
        ("deployment.environment.name", "staging"),
        ("vcs.ref.head.revision", commit),
    ];
    app.export_span("0af7651916cd43dd8448eb211c80319c", &resource, now - 60 * SECOND).await;
    app.store.flush().unwrap();
}

#[tokio::test]
async fn the_gate_passes_fails_and_cannot_tell_with_what_was_found_and_the_fix() {
    let upstream = tempfile::tempdir().unwrap();
    let repo = build_repo(upstream.path());
    let mirrors = tempfile::tempdir().unwrap();
    let app = app(upstream.path(), mirrors.path(), None);
    staging_spans(&app, "1.4.0", &repo.reviewed).await;

    // Reviewed, mapped, and its staging spans carry both attributes.
    let (status, report) = gate(&app, json!({"service": "cart", "commit": repo.reviewed})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["outcome"], "pass", "{report}");
    assert_eq!(report["summary"], "pass: 3 of 3 required checks pass");
    assert_eq!(
        check(&report, "review")["found"],
        "D12 (the commit's `Differential Revision:` line)"
    );
    assert_eq!(check(&report, "service")["found"], "`cart` is `shop` at `cart`, owned by payments");
    assert!(
        check(&report, "spans")["found"]
            .as_str()
            .unwrap()
            .contains("(version 1.4.0) carry service.version and a commit attribute")
    );

    // The commit's API answer and page show the last answer, with who asked.
    let (status, commit) = app.get(&format!("/api/v1/commits/{}", repo.reviewed)).await;
    assert_eq!(status, StatusCode::OK, "{commit}");
    assert_eq!(commit["review"]["id"], "D12", "{commit}");
    let answers = commit["gate"].as_array().unwrap();
    assert_eq!(answers.len(), 1, "{commit}");
    assert_eq!(
        (answers[0]["service"].as_str(), answers[0]["outcome"].as_str()),
        (Some("cart"), Some("pass"))
    );
    assert_eq!(answers[0]["asked_by"], "api");
    let (status, page, _) = app.get_page(&format!("/commits/{}", repo.reviewed)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Tagging gate") && page.contains("badge gate-pass"), "{page}");
    assert!(page.contains("asked by the API (spanblame gate)"), "{page}");

    // No review: fails, with the fix; a short sha is enough.
    let short: String = repo.unreviewed.chars().take(9).collect();
    let (_, report) = gate(&app, json!({"service": "cart", "commit": short})).await;
    assert_eq!(report["outcome"], "fail", "{report}");
    let review = check(&report, "review");
    assert_eq!(review["outcome"], "fail");
    assert!(
        review["fix"].as_str().unwrap().contains("`arc diff` adds a `Differential Revision:` line")
    );
    // Its own spans are not there yet; the latest say both, so that part cannot tell yet.
    assert_eq!(check(&report, "spans")["outcome"], "cannot_tell", "{report}");
    assert_eq!(report["summary"], "fail: review");
    let (_, commit) = app.get(&format!("/api/v1/commits/{}", repo.unreviewed)).await;
    assert_eq!(commit["gate"][0]["outcome"], "fail", "{commit}");
    let (_, page, _) = app.get_page(&format!("/commits/{}", repo.unreviewed)).await;
    assert!(page.contains("Fix: land it through a review"), "{page}");

    // A mapped service with no spans yet: cannot tell, and why.
    let (_, report) = gate(&app, json!({"service": "search", "commit": repo.reviewed})).await;
    assert_eq!(report["outcome"], "cannot_tell", "{report}");
    assert_eq!(
        check(&report, "spans")["found"],
        "no spans of `search` from staging in the last 30 minutes"
    );
    // ...which a review head may pass on the practice it can judge: none, so still cannot tell.
    let body = json!({"service": "search", "commit": repo.reviewed, "under_review": true});
    assert_eq!(gate(&app, body).await.1["outcome"], "cannot_tell");

    // Not mapped at all.
    let (_, report) = gate(&app, json!({"service": "ghost", "commit": repo.reviewed})).await;
    assert_eq!(report["outcome"], "fail");
    assert_eq!(check(&report, "service")["found"], "no [[services]] entry is named `ghost`");

    // A commit pushed after the last import is read from the mirror.
    let later =
        commit_file(upstream.path(), "cart/total.py", "def total(c):\n    return 2\n", "Two");
    let (_, report) = gate(&app, json!({"service": "cart", "commit": later})).await;
    assert_eq!(check(&report, "review")["outcome"], "fail", "{report}");
    let (_, report) = gate(&app, json!({"service": "cart", "commit": "b".repeat(40)})).await;
    assert_eq!(check(&report, "review")["outcome"], "cannot_tell", "{report}");
    assert!(check(&report, "review")["found"].as_str().unwrap().contains("is not in `shop` yet"));

    // Spans that say no commit fail the change that runs them.
    let stamped_by_tag = commit_file(
        upstream.path(),
        "cart/x.py",
        "x = 1\n",
        "X\n\nDifferential Revision: https://phab.example.com/D13",
    );
    git(upstream.path(), &["tag", "v1.5.0"]);
    let resource = [
        ("service.name", "cart"),
        ("service.version", "v1.5.0"),
        ("deployment.environment.name", "staging"),
    ];
    app.export_span("1af7651916cd43dd8448eb211c80319c", &resource, app.clock.get() - 30 * SECOND)
        .await;
    app.store.flush().unwrap();
    let (_, report) = gate(&app, json!({"service": "cart", "commit": stamped_by_tag})).await;
    assert_eq!(report["outcome"], "fail", "{report}");
    assert!(
        check(&report, "spans")["found"]
            .as_str()
            .unwrap()
            .ends_with("(version v1.5.0) carry no commit attribute")
    );
    assert!(check(&report, "spans")["fix"].as_str().unwrap().contains("vcs.ref.head.revision"));

    // Bad requests are named.
    for (body, needle) in [
        (json!({"service": "cart", "commit": "main"}), "is not a git commit id"),
        (json!({"service": " ", "commit": repo.reviewed}), "`service` must not be empty"),
        (json!({"service": "cart"}), "missing field `commit`"),
    ] {
        let (status, answer) = gate(&app, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"]["code"], "invalid_argument");
        assert!(answer["error"]["message"].as_str().unwrap().contains(needle), "{answer}");
    }
}

fn basic(user: &str, password: &[u8]) -> (String, String) {
    let mut credentials = format!("{user}:").into_bytes();
    credentials.extend_from_slice(password);
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    ("authorization".into(), format!("Basic {encoded}"))
}

#[tokio::test]
async fn a_harbormaster_step_gets_its_result_through_conduit_once_and_only_with_the_secret() {
    let upstream = tempfile::tempdir().unwrap();
    let repo = build_repo(upstream.path());
    let mirrors = tempfile::tempdir().unwrap();
    let (recorder, base) = Recorder::start(0).await;
    let app = app(upstream.path(), mirrors.path(), Some(format!("{base}/phabricator")));
    staging_spans(&app, "1.4.0", &repo.reviewed).await;
    let path = "/hooks/phabricator/phab/harbormaster?target=PHID-HMBT-abcdefghijklmnop&revision=12&diff=40&commit=&repository=SHOP";

    // Without the secret nothing is evaluated or sent.
    for headers in [
        vec![],
        vec![basic("harbormaster", b"not-the-secret")],
        vec![("authorization".into(), "Bearer x".into())],
    ] {
        let (status, answer) = app.post_raw(path, &headers, Vec::new()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains("Passphrase credential"),
            "{answer}"
        );
    }
    assert_eq!(server::deliver_due(&app.state).await.unwrap(), 0);

    // The revision is its review; `cart` is mapped and stamped; `search` has no spans yet,
    // which does not block.
    let (status, answer) = app.post_raw(path, &[basic("harbormaster", SECRET)], Vec::new()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["outcome"], "pass", "{answer}");
    assert_eq!(answer["services"], json!(["cart", "search"]));
    // Harbormaster retrying its request sends nothing twice.
    app.post_raw(path, &[basic("harbormaster", SECRET)], Vec::new()).await;
    assert_eq!(server::deliver_due(&app.state).await.unwrap(), 1);
    let sent = recorder.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/phabricator/api/harbormaster.sendmessage");
    let params = sent[0].conduit_params();
    assert_eq!(params["receiver"], "PHID-HMBT-abcdefghijklmnop");
    assert_eq!(params["type"], "pass");
    assert_eq!(params["__conduit__"]["token"], "api-abcdefghijklmnopqrstuvwxyzab");
    let units = params["unit"].as_array().unwrap();
    assert_eq!(units.len(), 6, "a unit per service and check: {units:?}");
    let unit = |name: &str| {
        units.iter().find(|u| u["name"] == name).unwrap_or_else(|| panic!("{name}: {units:?}"))
    };
    assert_eq!(unit("cart: The change links to a review")["result"], "pass");
    assert_eq!(
        unit("cart: The change links to a review")["details"],
        "D12 (the revision Harbormaster builds)"
    );
    assert_eq!(unit("search: Spans carry service.version and a commit")["result"], "skip");
    assert!(
        unit("search: Spans carry service.version and a commit")["details"]
            .as_str()
            .unwrap()
            .starts_with("Cannot tell yet: no spans of `search`")
    );
    assert_eq!(unit("cart: The service's code is mapped")["format"], "remarkup");

    // The diff's answer shows on the commit its revision landed as.
    let (_, commit) = app.get(&format!("/api/v1/commits/{}", repo.reviewed)).await;
    let answers = commit["gate"].as_array().unwrap();
    assert!(
        answers.iter().any(|a| a["asked_by"] == "harbormaster"
            && a["review"] == "D12"
            && a["service"] == "cart"
            && a["outcome"] == "pass"),
        "{commit}"
    );

    // A commit build of a repository no service is mapped to fails, saying how to map one.
    let path = "/hooks/phabricator/phab/harbormaster?target=PHID-HMBT-zzzz&commit=".to_owned()
        + &repo.unreviewed
        + "&repository=OTHER";
    let (status, answer) = app.post_raw(&path, &[basic("", SECRET)], Vec::new()).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (StatusCode::ACCEPTED, Some("fail")),
        "{answer}"
    );
    server::deliver_due(&app.state).await.unwrap();
    let params = recorder.take()[0].conduit_params();
    assert_eq!(params["type"], "fail");
    assert!(params["unit"][0]["details"].as_str().unwrap().contains("`&service=<service.name>`"));
    // Named in the URI instead: the unreviewed commit fails on its review.
    let path = "/hooks/phabricator/phab/harbormaster?target=PHID-HMBT-yyyy&service=cart&commit="
        .to_owned()
        + &repo.unreviewed;
    let (_, answer) = app.post_raw(&path, &[basic("", SECRET)], Vec::new()).await;
    assert_eq!(answer["outcome"], "fail", "{answer}");
    server::deliver_due(&app.state).await.unwrap();
    let params = recorder.take()[0].conduit_params();
    let failed: Vec<&Value> =
        params["unit"].as_array().unwrap().iter().filter(|u| u["result"] == "fail").collect();
    assert_eq!(failed.len(), 1, "{params}");
    assert!(failed[0]["details"].as_str().unwrap().contains("Fix: land it through a review"));

    // Malformed build variables are named.
    for (query, needle) in [
        ("", "no `target` in the query"),
        ("?target=PHID-DREV-x", "is not a build target PHID"),
        ("?target=PHID-HMBT-a&revision=abc", "is not a revision number"),
    ] {
        let (status, answer) = app
            .post_raw(
                &format!("/hooks/phabricator/phab/harbormaster{query}"),
                &[basic("", SECRET)],
                Vec::new(),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(needle), "{answer}");
    }
}

#[tokio::test]
async fn a_new_review_head_gets_the_gate_status_on_each_forge() {
    let (recorder, base) = Recorder::start(0).await;
    // (kind, integration, event, fixture, the configured repository's path there)
    let cases = [
        (
            ForgeKind::Github,
            "gh",
            "pull_request",
            "github/pull_request_opened.json",
            "Codertocat/Hello-World",
        ),
        (
            ForgeKind::Gitea,
            "gt",
            "pull_request",
            "gitea/pull_request.go-playground.json",
            "example/example",
        ),
        (
            ForgeKind::Gitlab,
            "gl",
            "Merge Request Hook",
            "gitlab/merge_request_hook.docs.json",
            "gitlabhq/gitlab-test",
        ),
    ];
    let mut changes = ChangeSettings::default();
    let mut forges = Vec::new();
    let mut repositories = Vec::new();
    for (kind, name, _, fixture_path, path) in cases {
        changes.integrations.push(Integration {
            name: name.into(),
            kind,
            secret: SECRET.to_vec(),
            api_url: Some(format!("{base}/{name}")),
            api_token: Some(format!("token-{name}")),
        });
        // The repository as the webhook names it, so events are filed under it.
        let event: Value = serde_json::from_slice(&fixture(fixture_path)).unwrap();
        let web_url = event["repository"]["html_url"]
            .as_str()
            .or(event["project"]["web_url"].as_str())
            .unwrap()
            .to_owned();
        changes.repositories.push(RepositorySettings {
            name: format!("repo-{name}"),
            url: Some(web_url),
            forge: Some(kind),
            ..RepositorySettings::default()
        });
        changes.services.push(ServiceOwnership {
            service: format!("svc-{name}"),
            repository: Some(format!("repo-{name}")),
            path_prefix: None,
            // GitLab's service has no owner: its head fails the gate.
            team: (kind != ForgeKind::Gitlab).then(|| "payments".to_owned()),
            deploy_from: Vec::new(),
        });
        forges.push(ForgeNotify {
            integration: name.into(),
            comments: false,
            statuses: false,
            gate: true,
        });
        repositories.push(RepositoryForge {
            repository: format!("repo-{name}"),
            integration: name.into(),
            path: path.into(),
        });
    }
    let app = TestApp::with_full_settings(server::Settings {
        public_url: Some("https://spanblame.example.com".into()),
        changes,
        notifications: NotifySettings { forges, repositories, ..NotifySettings::default() },
        ..TestApp::default_settings()
    });

    for (kind, name, event, fixture_path, _) in cases {
        let secret = std::str::from_utf8(SECRET).unwrap();
        let (headers, body) =
            forge::signed_delivery(kind, secret, event, "d-1", &fixture(fixture_path));
        let (status, answer) =
            app.post_raw(&format!("/hooks/{}/{name}", kind.as_str()), &headers, body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        // A redelivery changes nothing and decides nothing again.
        app.post_raw(&format!("/hooks/{}/{name}", kind.as_str()), &headers, body).await;
    }
    assert_eq!(server::deliver_due(&app.state).await.unwrap(), 3);
    let sent = recorder.take();
    let of = |prefix: &str| {
        sent.iter()
            .find(|r| r.path.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix}: {sent:?}"))
    };

    let github = of("/gh/repos/Codertocat/Hello-World/statuses/");
    assert_eq!(github.header("authorization"), "Bearer token-gh");
    assert_eq!(github.json()["context"], "spanblame/tagging");
    assert_eq!(github.json()["state"], "success", "{}", github.json());
    assert!(
        github.json()["target_url"]
            .as_str()
            .unwrap()
            .starts_with("https://spanblame.example.com/commits/")
    );
    let gitea = of("/gt/api/v1/repos/example/example/statuses/");
    assert_eq!(
        (gitea.json()["context"].as_str(), gitea.json()["state"].as_str()),
        (Some("spanblame/tagging"), Some("success"))
    );
    let gitlab = of(
        "/gl/api/v4/projects/gitlabhq%2Fgitlab-test/statuses/da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    );
    assert_eq!(gitlab.json()["name"], "spanblame/tagging", "{}", gitlab.json());
    assert_eq!(gitlab.json()["state"], "failed");
    assert!(
        gitlab.json()["description"]
            .as_str()
            .unwrap()
            .starts_with("svc-gl: service: `svc-gl` has no owner"),
        "{}",
        gitlab.json()
    );
    let (_, listed) = app.get("/api/v1/notifications").await;
    let gates =
        listed["notifications"].as_array().unwrap().iter().filter(|n| n["kind"] == "gate").count();
    assert_eq!(gates, 3, "{listed}");
}
