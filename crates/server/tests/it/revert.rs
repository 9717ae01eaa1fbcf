//! Proposing a regression's revert through `POST /api/v1/findings/{id}/revert`, over a real
//! git repository mirrored by the server: the revert is made on the head (or refused with the
//! conflicting file named), queued once per finding and suspects; on Gitea, GitHub, GitLab and
//! Gogs it is pushed as a branch of the real upstream repository and proposed as a pull
//! (merge) request to a recorder answering as their APIs do. Sending it to a real Phorge is
//! `crates/spanblame/tests/it/phorge_live.rs`.

use axum::http::StatusCode;
use mirror::testing::{commit_file, git};
use serde_json::json;
use server::{
    ChangeSettings, Integration, MirrorSettings, MirrorSource, NotifySettings, RepositoryForge,
    RepositorySettings,
};

use crate::notify::settings_with;
use crate::support::{SECOND, TestApp};

/// A regressed, explained finding of `checkout` `version` whose suspects are `suspects` in
/// `shop`.
fn finding_with_suspects(app: &TestApp, version: &str, suspects: &[&str]) -> u64 {
    let now = app.clock.get();
    let deploy = app.record_deploy("checkout", version, Some(suspects[0]), now - 600 * SECOND);
    let detail = json!({
        "before": {"value_ms": 120.0, "spans": 2400}, "after": {"value_ms": 180.0, "spans": 2100},
        "effect": {"kind": "ratio", "estimate": 1.5, "low": 1.4, "high": 1.62},
    });
    let id = app.record_regression(deploy.id, now, &detail);
    let suspects: Vec<_> = suspects
        .iter()
        .map(|sha| {
            json!({"commit": {"sha": sha, "subject": "Apply promotions per item", "repository": "shop"},
                "score": 0.9, "reasons": [], "files": [],
                "review": {"kind": "gitea", "id": "5", "title": "Apply promotions per item"}})
        })
        .collect();
    let explanation = json!({"suspects": suspects, "ranking": {"separated": true},
        "rollback": {"previous_version": "1.1.0", "commands": ["git revert --no-edit x"]}});
    app.store.set_finding_explanation(id, &explanation.to_string(), true).unwrap();
    id
}

#[tokio::test]
async fn a_revert_is_made_on_the_head_queued_once_or_refused_with_the_conflict_named() {
    let upstream = tempfile::tempdir().unwrap();
    let up = upstream.path();
    git(up, &["init", "-q", "-b", "main"]);
    commit_file(up, "checkout/total.py", "def total(cart):\n    return cart.sum\n", "add total");
    let slow = commit_file(up, "checkout/promo.py", "def apply(cart):\n    slow()\n", "slow promo");
    let later = commit_file(up, "checkout/tax.py", "def tax():\n    pass\n", "tax");
    let rewritten =
        commit_file(up, "checkout/total.py", "def total(cart):\n    return 0\n", "zero");
    let rewrites =
        commit_file(up, "checkout/total.py", "def total(cart):\n    return -1\n", "minus one");
    let mirrors = tempfile::tempdir().unwrap();
    let repository = RepositorySettings {
        name: "shop".into(),
        url: Some("https://phab.example.com/source/shop.git".into()),
        web_url: None,
        forge: Some(model::ForgeKind::Phabricator),
        mirror: Some(MirrorSource::Clone(up.to_str().unwrap().to_owned())),
        monogram: Some("rSHOP".into()),
    };
    let changes = ChangeSettings {
        integrations: vec![Integration {
            name: "phab".into(),
            kind: model::ForgeKind::Phabricator,
            secret: b"hook-secret".to_vec(),
            api_url: Some("https://phab.example.com".into()),
            api_token: Some("api-abcdefghijklmnopqrstuvwxyzab".into()),
        }],
        repositories: vec![repository.clone()],
        mirrors: MirrorSettings { dir: mirrors.path().to_owned(), ..MirrorSettings::default() },
        ..ChangeSettings::default()
    };
    let notifications = NotifySettings {
        repositories: vec![RepositoryForge {
            repository: "shop".into(),
            integration: "phab".into(),
            path: "rSHOP".into(),
        }],
        ..NotifySettings::default()
    };
    let app = TestApp::with_full_settings(settings_with(changes, notifications));
    server::sync_once(&app.state, &repository).unwrap();

    // The top suspect reverts cleanly on the head, whatever came after it elsewhere.
    let finding = finding_with_suspects(&app, "1.2.0", &[&slow, &rewritten]);
    let path = format!("/api/v1/findings/{finding}/revert");
    let (status, proposed) = app.post_json(&path, &json!({"by": "oncall"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{proposed}");
    assert_eq!(proposed["status"], "queued");
    assert_eq!(proposed["commits"], json!([slow]));
    assert_eq!(proposed["target"], "revert of PR #5", "named by the suspect's review");
    let (_, listed) = app.get(&format!("/api/v1/notifications?finding={finding}")).await;
    let row = &listed["notifications"][0];
    assert_eq!((&row["kind"], &row["state"]), (&json!("revert"), &json!("pending")), "{listed}");
    assert!(row["summary"].as_str().unwrap().contains("proposed by oncall"), "{row}");
    // `/metrics` counts it as waiting for its receiver, beside the build and the process.
    let (_, metrics, _) = app.get_page("/metrics").await;
    let pending = "spanblame_notifications{receiver=\"forge:phab\",state=\"pending\"} 1";
    assert!(metrics.contains(pending), "{metrics}");
    assert!(metrics.contains("spanblame_build_info{version=\""), "{metrics}");
    assert!(metrics.lines().any(|l| l.starts_with("process_resident_memory_bytes ")));
    assert!(metrics.lines().any(|l| l.starts_with("process_open_fds ")));
    // The finding page offers the button, and once the forge made the revision, links it.
    let (_, page, _) = app.get_page(&format!("/findings/{finding}")).await;
    assert!(page.contains(&format!("data-revert=\"/api/v1/findings/{finding}/revert\"")), "{page}");
    let id = row["id"].as_u64().unwrap();
    let made = store::AttemptOutcome::Delivered {
        status: 200,
        result: Some("D43 https://phab.example.com/D43".into()),
    };
    app.store.record_attempt(id, &made, app.clock.get()).unwrap();
    let (_, page, _) = app.get_page(&format!("/findings/{finding}")).await;
    assert!(page.contains("made <a href=\"https://phab.example.com/D43\">D43</a>"), "{page}");
    // Asked again: the same proposal, nothing new.
    let (status, again) = app.post_json(&path, &json!({})).await;
    assert_eq!((status, &again["status"]), (StatusCode::ACCEPTED, &json!("already proposed")));
    assert_eq!(again["notification"], proposed["notification"]);

    // A suspect whose lines a later commit changed again: 409, naming the file.
    let (status, refused) = app.post_json(&path, &json!({"commits": [rewritten]})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("conflicts with later changes in checkout/total.py"), "{message}");
    // Two suspects of one finding, undone newest first, apply together.
    app.clock.set(app.clock.get() + 3600 * SECOND);
    let finding2 = finding_with_suspects(&app, "1.3.0", &[&rewritten, &rewrites]);
    let path2 = format!("/api/v1/findings/{finding2}/revert");
    let (status, both) =
        app.post_json(&path2, &json!({"commits": [&rewritten[..12], &rewrites[..12]]})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{both}");
    assert_eq!(both["commits"], json!([rewrites, rewritten]), "newest first");

    // The incident's button asks the same: its explained finding's proposal.
    let deploy = app.store.finding(finding).unwrap().unwrap().deploy_id;
    let (status, through) =
        app.post_json(&format!("/api/v1/incidents/{deploy}/revert"), &json!({})).await;
    assert_eq!(
        (status, &through["status"]),
        (StatusCode::ACCEPTED, &json!("already proposed")),
        "{through}"
    );
    assert_eq!(through["notification"], proposed["notification"]);
    let (status, _) = app.post_json("/api/v1/incidents/999/revert", &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Not a suspect, not a finding, not a sha.
    let (status, _) = app.post_json(&path, &json!({"commits": [later]})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.post_json("/api/v1/findings/999/revert", &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, bad) = app.post_json(&path, &json!({"commits": ["main"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
}

#[tokio::test]
async fn elsewhere_the_revert_is_a_pushed_branch_and_a_pull_request() {
    let (recorder, base) = crate::recorder::Recorder::start(0).await;
    for kind in [
        model::ForgeKind::Gitea,
        model::ForgeKind::Github,
        model::ForgeKind::Gitlab,
        model::ForgeKind::Gogs,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let up = dir.path().join("up.git");
        git(dir.path(), &["init", "-q", "--bare", "-b", "main", up.to_str().unwrap()]);
        let work = dir.path().join("work");
        git(dir.path(), &["clone", "-q", up.to_str().unwrap(), work.to_str().unwrap()]);
        commit_file(&work, "checkout/total.py", "def total(cart):\n    return 1\n", "total");
        let slow = commit_file(&work, "checkout/promo.py", "def apply():\n    slow()\n", "slow");
        let head = commit_file(&work, "README.md", "# shop\n", "readme");
        git(&work, &["push", "-q", "origin", "HEAD:main"]);
        let repository = RepositorySettings {
            name: "shop".into(),
            url: Some(up.to_str().unwrap().to_owned()),
            web_url: Some("https://forge.example.com/acme/shop".into()),
            forge: Some(kind),
            mirror: Some(MirrorSource::Clone(up.to_str().unwrap().to_owned())),
            monogram: None,
        };
        let changes = ChangeSettings {
            integrations: vec![Integration {
                name: "main".into(),
                kind,
                secret: b"hook-secret".to_vec(),
                api_url: Some(format!("{base}/{kind}")),
                api_token: Some(format!("token-{kind}")),
            }],
            repositories: vec![repository.clone()],
            mirrors: MirrorSettings {
                dir: dir.path().join("mirrors"),
                ..MirrorSettings::default()
            },
            ..ChangeSettings::default()
        };
        let notifications = NotifySettings {
            repositories: vec![RepositoryForge {
                repository: "shop".into(),
                integration: "main".into(),
                path: "acme/shop".into(),
            }],
            ..NotifySettings::default()
        };
        let app = TestApp::with_full_settings(settings_with(changes, notifications));
        server::sync_once(&app.state, &repository).unwrap();
        // The suspect came through review 5 by ada, reviewed by bob.
        let review = model::Review {
            kind,
            id: "5".into(),
            title: "Apply promotions per item".into(),
            url: None,
            author: model::Person { username: Some("ada".into()), ..model::Person::default() },
            reviewers: vec!["bob".into()],
            state: model::ReviewState::Merged,
            head_branch: None,
            head_sha: Some(slow.clone()),
            merge_commit_sha: Some(slow.clone()),
            commits: vec![slow.clone()],
        };
        let batch = store::ChangeBatch {
            repository: "shop".into(),
            reviews: vec![review],
            ..store::ChangeBatch::default()
        };
        app.store.record_changes(&batch).unwrap();
        let finding = finding_with_suspects(&app, "1.2.0", &[&slow]);
        let (status, proposed) = app
            .post_json(&format!("/api/v1/findings/{finding}/revert"), &json!({"by": "oncall"}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{kind}: {proposed}");
        server::deliver_due(&app.state).await.unwrap();

        // The upstream repository has the branch: the head with the suspect undone.
        let branch = format!("spanblame/revert-{finding}-{}", &slow[..10]);
        let files = git(&up, &["ls-tree", "-r", "--name-only", &branch]);
        assert_eq!(files.lines().collect::<Vec<_>>(), ["README.md", "checkout/total.py"], "{kind}");
        assert_eq!(git(&up, &["rev-parse", &format!("{branch}^")]), head, "{kind}: on the head");
        let message = git(&up, &["log", "-1", "--format=%B", &branch]);
        assert!(message.starts_with("Revert \"Apply promotions per item\""), "{kind}: {message}");
        assert!(message.contains(&format!("This reverts commit {slow}")), "{kind}: {message}");
        assert!(message.contains("Proposed by oncall."), "{kind}: {message}");

        // ...and the forge has the pull (merge) request of it, where it has an API for one.
        let sent = recorder.take();
        let (_, listed) = app.get(&format!("/api/v1/notifications?finding={finding}")).await;
        let row = &listed["notifications"][0];
        assert_eq!(row["state"], "delivered", "{kind}: {row}");
        let result = row["result"].as_str().unwrap();
        match kind {
            model::ForgeKind::Gogs => {
                assert!(sent.is_empty(), "Gogs has no pull request API: {sent:?}");
                assert_eq!(
                    result,
                    format!("{branch} https://forge.example.com/acme/shop/compare/main...{branch}")
                );
            }
            model::ForgeKind::Gitlab => {
                // The merge request, the two reviewers' ids, then the merge request's reviewers.
                assert_eq!(sent.len(), 4, "{sent:?}");
                assert_eq!(sent[0].path, "/gitlab/api/v4/projects/acme%2Fshop/merge_requests");
                let body = sent[0].json();
                assert_eq!(
                    (&body["source_branch"], &body["target_branch"]),
                    (&json!(branch), &json!("main"))
                );
                assert!(result.starts_with('!'), "{result}");
                assert_eq!(sent[1].path, "/gitlab/api/v4/users");
                assert_eq!(sent[3].method, "PUT");
                let iid = result[1..].split(' ').next().unwrap();
                let wanted = format!("/gitlab/api/v4/projects/acme%2Fshop/merge_requests/{iid}");
                assert_eq!(sent[3].path, wanted);
                assert_eq!(sent[3].json()["reviewer_ids"].as_array().map(Vec::len), Some(2));
            }
            _ => {
                assert_eq!(sent.len(), 2, "{kind}: the pull request, then its reviewers: {sent:?}");
                assert!(sent[0].path.ends_with("/repos/acme/shop/pulls"), "{}", sent[0].path);
                let body = sent[0].json();
                assert_eq!((&body["head"], &body["base"]), (&json!(branch), &json!("main")));
                assert!(body["body"].as_str().unwrap().contains(&format!("/findings/{finding}")));
                assert!(result.starts_with('#') && result.contains("https://"), "{result}");
                let number = result[1..].split(' ').next().unwrap();
                let wanted = format!("/repos/acme/shop/pulls/{number}/requested_reviewers");
                assert!(sent[1].path.ends_with(&wanted), "{}", sent[1].path);
                assert_eq!(
                    sent[1].json()["reviewers"],
                    json!(["ada", "bob"]),
                    "the original author and reviewers"
                );
            }
        }
    }
}
