//! Deploys from forge events through the real router and store, from each forge's payload
//! fixture: a deployment that succeeded or a published release is exactly one deploy of the
//! services whose `deploy_from` takes it, a redelivery none, a failed deployment none; a
//! release's tag is resolved through the mirror; a Phabricator deploy plan's last step is one
//! deploy too, only with the integration's secret; and a release and a report of the same
//! version are one deploy, whose page links the forge's event.

use axum::http::StatusCode;
use base64::Engine;
use mirror::testing::{commit_file, git};
use model::ForgeKind;
use serde_json::{Value, json};
use server::{
    ChangeSettings, DeployTrigger, Integration, MirrorSettings, MirrorSource, RepositorySettings,
    ServiceOwnership,
};

use crate::support::{T0, TestApp, fixture};

const SECRET: &str = "a-webhook-secret-for-deploys";

/// One repository per fixture, as the fixture's forge names it, and a service deployed by it.
fn settings(gitea_upstream: &std::path::Path, mirrors: &std::path::Path) -> ChangeSettings {
    let integration = |kind: ForgeKind| Integration {
        name: kind.as_str().into(),
        kind,
        secret: SECRET.as_bytes().to_vec(),
        api_url: None,
        api_token: None,
    };
    let repository = |name: &str, url: &str, forge| RepositorySettings {
        name: name.into(),
        url: Some(url.into()),
        web_url: None,
        forge: Some(forge),
        mirror: None,
        monogram: None,
    };
    let service = |name: &str, repository: &str, deploy_from: &[&str]| ServiceOwnership {
        service: name.into(),
        repository: Some(repository.into()),
        path_prefix: None,
        team: None,
        deploy_from: deploy_from.iter().map(|t| DeployTrigger::parse(t).unwrap()).collect(),
    };
    let mut example =
        repository("example", "http://localhost:3000/example/example.git", ForgeKind::Gitea);
    example.mirror = Some(MirrorSource::Clone(gitea_upstream.to_str().unwrap().to_owned()));
    ChangeSettings {
        integrations: [ForgeKind::Gogs, ForgeKind::Gitea, ForgeKind::Github, ForgeKind::Gitlab]
            .into_iter()
            .map(integration)
            .collect(),
        repositories: vec![
            repository(
                "hello-world",
                "https://github.com/Codertocat/Hello-World",
                ForgeKind::Github,
            ),
            repository(
                "deployment-webhooks",
                "http://10.126.0.2:3000/root/test-deployment-webhooks.git",
                ForgeKind::Gitlab,
            ),
            example,
            repository("gogs-hello", "http://try.gogs.io/gogits/hello-world.git", ForgeKind::Gogs),
        ],
        services: vec![
            // Production deployments only: a staging one deploys nothing.
            service("hello-web", "hello-world", &["deployment:production"]),
            // Any environment, under the forge's name (`staging` in the fixture).
            service("deploy-hooks", "deployment-webhooks", &["deployment"]),
            service("example-api", "example", &["release:production"]),
            service("gogs-api", "gogs-hello", &["release:staging"]),
            // Same repository, no `deploy_from`: never deployed by the forge.
            service("gogs-worker", "gogs-hello", &[]),
        ],
        mirrors: MirrorSettings { dir: mirrors.to_owned(), ..MirrorSettings::default() },
        gate: Default::default(),
    }
}

async fn deliver(
    app: &TestApp,
    kind: ForgeKind,
    event: &str,
    delivery: &str,
    json: &[u8],
) -> (StatusCode, Value) {
    let (headers, body) = forge::signed_delivery(kind, SECRET, event, delivery, json);
    app.post_raw(&format!("/hooks/{}/{}", kind.as_str(), kind.as_str()), &headers, body).await
}

async fn deploys_of(app: &TestApp, service: &str) -> Vec<Value> {
    let (status, answer) = app.get(&format!("/api/v1/deploys?service={service}")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["deploys"].as_array().cloned().unwrap_or_default()
}

fn edited(path: &str, edit: impl Fn(&mut Value)) -> Vec<u8> {
    let mut json: Value = serde_json::from_slice(&fixture(path)).unwrap();
    edit(&mut json);
    serde_json::to_vec(&json).unwrap()
}

#[tokio::test]
async fn each_forge_event_is_one_deploy_and_a_redelivery_or_failure_none() {
    // Gitea's release names tag `example`; the mirror knows which commit that is.
    let upstream = tempfile::tempdir().unwrap();
    let up = upstream.path();
    git(up, &["init", "-q", "-b", "main"]);
    commit_file(up, "main.go", "package main\n", "first");
    let tagged = commit_file(up, "main.go", "package main // v2\n", "second");
    git(up, &["tag", "example"]);
    commit_file(up, "main.go", "package main // v3\n", "after the tag");
    let mirrors = tempfile::tempdir().unwrap();
    let app = TestApp::with_changes(settings(up, mirrors.path()));

    let cases = [
        (
            ForgeKind::Github,
            "deployment_status",
            "github/deployment_status.json",
            "hello-web",
            "production",
            Some("f95f852bd8fca8fcc58a9a2d6c842781e32a215e"),
        ),
        (
            ForgeKind::Gitlab,
            "Deployment Hook",
            "gitlab/deployment_hook.docs.json",
            "deploy-hooks",
            "staging",
            Some("279484c09fbe69ededfced8c1bb6e6d24616b468"),
        ),
        (
            ForgeKind::Gitea,
            "release",
            "gitea/release_published.go-playground.json",
            "example-api",
            "production",
            Some(tagged.as_str()),
        ),
        (ForgeKind::Gogs, "release", "gogs/release.go-scm.json", "gogs-api", "staging", None),
    ];
    for (kind, event, path, service, environment, commit) in cases {
        let json = fixture(path);
        let (status, answer) = deliver(&app, kind, event, path, &json).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        assert_eq!(answer["status"], "applied", "{path}: {answer}");
        assert_eq!(answer["deploys"].as_array().unwrap().len(), 1, "{path}: {answer}");
        let listed = deploys_of(&app, service).await;
        assert_eq!(listed.len(), 1, "{path}: {listed:?}");
        let deploy = &listed[0];
        assert_eq!(deploy["environment"], environment, "{path}");
        assert_eq!(deploy["commit_sha"].as_str(), commit, "{path}: {deploy}");
        assert_eq!(deploy["forge_event"]["forge"], kind.as_str(), "{path}: {deploy}");
        assert!(deploy["forge_event"]["url"].as_str().unwrap().starts_with("http"), "{path}");

        // Redelivered (a new delivery id too, as a forge's "redeliver" button sends): none.
        let (status, answer) = deliver(&app, kind, event, "again", &json).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        assert_eq!(answer["status"], "duplicate", "{path}: {answer}");
        assert_eq!(deploys_of(&app, service).await.len(), 1, "{path}");
    }
    // The version spans would carry: unknown yet, so the commit or the tag names it.
    assert_eq!(deploys_of(&app, "gogs-api").await[0]["version"], "v1.0.0");
    assert_eq!(deploys_of(&app, "example-api").await[0]["version"], "example");
    assert!(deploys_of(&app, "gogs-worker").await.is_empty(), "no deploy_from, no deploy");

    // Failed deployments, a staging deployment of a production-only service, a deleted
    // release: nothing, and the answer says why.
    let not_deploys = [
        (
            ForgeKind::Github,
            "deployment_status",
            edited("github/deployment_status.json", |j| {
                j["deployment_status"]["state"] = "failure".into();
                j["deployment"]["id"] = 2.into();
            }),
            "`failure`",
        ),
        (
            ForgeKind::Github,
            "deployment_status",
            edited("github/deployment_status.json", |j| {
                j["deployment_status"]["environment"] = "staging".into();
                j["deployment"]["id"] = 3.into();
            }),
            "deploy_from = [\\\"deployment:staging\\\"]",
        ),
        (
            ForgeKind::Gitlab,
            "Deployment Hook",
            edited("gitlab/deployment_hook.docs.json", |j| {
                j["status"] = "failed".into();
                j["deployment_id"] = 16.into();
            }),
            "`failed`",
        ),
        (
            ForgeKind::Gitea,
            "release",
            edited("gitea/release_published.go-playground.json", |j| {
                j["action"] = "deleted".into();
            }),
            "`deleted`",
        ),
    ];
    for (kind, event, json, why) in not_deploys {
        let (status, answer) = deliver(&app, kind, event, why, &json).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        assert_eq!(answer["status"], "ignored", "{answer}");
        assert!(answer.to_string().contains(why), "{why}: {answer}");
    }
    for service in ["hello-web", "deploy-hooks", "example-api", "gogs-api"] {
        assert_eq!(deploys_of(&app, service).await.len(), 1, "{service}");
    }
}

#[tokio::test]
async fn a_release_and_a_report_of_its_version_are_one_deploy_linked_to_the_release() {
    let upstream = tempfile::tempdir().unwrap();
    git(upstream.path(), &["init", "-q", "-b", "main"]);
    let mirrors = tempfile::tempdir().unwrap();
    let app = TestApp::with_changes(settings(upstream.path(), mirrors.path()));
    let (status, answer) =
        deliver(&app, ForgeKind::Gogs, "release", "r1", &fixture("gogs/release.go-scm.json")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let released = deploys_of(&app, "gogs-api").await.remove(0);

    // CI reports the same version with its commit a moment later.
    let commit = "a".repeat(40);
    let (status, reported) = app
        .post_json(
            "/api/v1/deploys",
            &json!({"service": "gogs-api", "environment": "staging", "version": "v1.0.0",
                "commit": commit, "deployer": "ci",
                "started_at": views::rfc3339(T0)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reported}");
    assert_eq!(reported["id"], released["id"], "merged into the release's deploy");
    let listed = deploys_of(&app, "gogs-api").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["commit_sha"], commit.as_str());
    assert_eq!(listed[0]["forge_event"]["kind"], "release");
    assert_eq!(listed[0]["forge_event"]["id"], "1");

    // Its page says where it came from, with the link.
    let id = listed[0]["id"].as_u64().unwrap();
    let (status, page, _) = app.get_page(&format!("/deploys/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Gogs release 1"), "{page}");
    assert!(page.contains("href=\"http://try.gogs.io/gogits/hello-world/releases\""), "{page}");
}

#[tokio::test]
async fn a_harbormaster_deploy_plan_step_records_its_commit_once_and_only_with_the_secret() {
    let upstream = tempfile::tempdir().unwrap();
    git(upstream.path(), &["init", "-q", "-b", "main"]);
    let mirrors = tempfile::tempdir().unwrap();
    let mut changes = settings(upstream.path(), mirrors.path());
    changes.integrations.push(Integration {
        name: "phab".into(),
        kind: ForgeKind::Phabricator,
        secret: SECRET.as_bytes().to_vec(),
        api_url: Some("https://phab.example.com".into()),
        api_token: Some("api-token".into()),
    });
    changes.repositories.push(RepositorySettings {
        name: "shop".into(),
        url: None,
        web_url: None,
        forge: Some(ForgeKind::Phabricator),
        mirror: None,
        monogram: Some("rSHOP".into()),
    });
    changes.services.push(ServiceOwnership {
        service: "shop-web".into(),
        repository: Some("shop".into()),
        path_prefix: None,
        team: None,
        deploy_from: vec![DeployTrigger::parse("deployment:production").unwrap()],
    });
    let app = TestApp::with_changes(changes);
    let basic = |password: &str| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("phab:{password}"));
        vec![("authorization".to_owned(), format!("Basic {encoded}"))]
    };
    let commit = "c".repeat(40);
    let path = format!(
        "/hooks/phabricator/phab/deployed?environment=production&build=42&commit={commit}&repository=SHOP"
    );

    let (status, answer) = app.post_raw(&path, &basic("not-the-secret"), Vec::new()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let (status, answer) = app.post_raw(&path, &[], Vec::new()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let no_commit = path.replace(&commit, "${buildable.commit}");
    let (status, answer) = app.post_raw(&no_commit, &basic(SECRET), Vec::new()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("buildable.commit"), "{answer}");
    assert!(deploys_of(&app, "shop-web").await.is_empty(), "refusals record nothing");

    let (status, answer) = app.post_raw(&path, &basic(SECRET), Vec::new()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "applied", "{answer}");
    // Harbormaster restarted the step: the same build, nothing new.
    let (status, answer) = app.post_raw(&path, &basic(SECRET), Vec::new()).await;
    assert_eq!((status, answer["status"].as_str()), (StatusCode::OK, Some("duplicate")));
    let listed = deploys_of(&app, "shop-web").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["environment"], "production");
    assert_eq!(listed[0]["commit_sha"], commit.as_str());
    assert_eq!(listed[0]["forge_event"]["description"], "Phabricator build 42");
    assert_eq!(listed[0]["forge_event"]["url"], "https://phab.example.com/harbormaster/build/42/");

    // A staging plan deploys no production-only service, and says what would.
    let staging = path.replace("production", "staging").replace("build=42", "build=43");
    let (status, answer) = app.post_raw(&staging, &basic(SECRET), Vec::new()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("deployment:staging"), "{answer}");
}
