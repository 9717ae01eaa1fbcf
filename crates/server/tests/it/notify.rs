//! Notifications end to end in process: a deploy's regression is announced to a local HTTP
//! server that records requests and answers as each forge's API documents (no hosted forge can
//! be reached here), to a generic webhook, and to a real Prometheus Alertmanager; resolving it
//! announces that too. Each review gets exactly one comment per state change, across repeated
//! decisions and a restart between finding and delivery; a receiver that fails five times gets
//! the message once when it recovers; one that keeps failing is dead-lettered and can be
//! retried through the API.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use server::{
    AlertSink, ChangeSettings, ForgeNotify, Integration, NotifySettings, RepositoryForge,
    RetrySettings, ServiceNotify, SinkAuth,
};

use crate::recorder::{Recorded, Recorder};
use crate::support::{SECOND, T0, TestApp};

const PHAB_TOKEN: &str = "api-abcdefghijklmnopqrstuvwxyzab";

/// One integration of each forge kind, each on its own path of the recorder, commenting and
/// setting statuses; a repository per forge.
pub(crate) fn forges(base: &str) -> (ChangeSettings, Vec<ForgeNotify>, Vec<RepositoryForge>) {
    let kinds = [
        model::ForgeKind::Gogs,
        model::ForgeKind::Gitea,
        model::ForgeKind::Github,
        model::ForgeKind::Gitlab,
        model::ForgeKind::Phabricator,
    ];
    let mut changes = ChangeSettings::default();
    let mut notify = Vec::new();
    let mut repositories = Vec::new();
    for kind in kinds {
        let name = format!("{kind}-main");
        changes.integrations.push(Integration {
            name: name.clone(),
            kind,
            secret: b"hook-secret".to_vec(),
            api_url: Some(format!("{base}/{kind}")),
            api_token: Some(if kind == model::ForgeKind::Phabricator {
                PHAB_TOKEN.into()
            } else {
                format!("token-{kind}")
            }),
        });
        notify.push(ForgeNotify {
            integration: name.clone(),
            comments: true,
            statuses: true,
            gate: false,
        });
        repositories.push(RepositoryForge {
            repository: format!("shop-{kind}"),
            integration: name,
            path: if kind == model::ForgeKind::Phabricator {
                "rSHOP".into()
            } else {
                "acme/shop".into()
            },
        });
    }
    (changes, notify, repositories)
}

/// A deploy of `service` with one explained p95 regression whose top suspect is in
/// `repository`, with a review of `review_kind` numbered `review_id` (none when `None`).
pub(crate) fn regression(
    app: &TestApp,
    service: &str,
    repository: &str,
    review: Option<(&str, &str)>,
) -> (u64, u64) {
    let now = app.clock.get();
    let commit = "c0ffee".repeat(6) + "c0ff";
    let deploy = app.record_deploy(service, "1.2.0", Some(&commit), now - 10 * 60 * SECOND);
    let detail = json!({
        "baseline": "before_window",
        "before": {"value_ms": 120.0, "spans": 2400},
        "after": {"value_ms": 180.0, "spans": 2100},
        "effect": {"kind": "ratio", "estimate": 1.5, "low": 1.4, "high": 1.62},
        "confidence": 0.999, "p_value": 1e-9,
    });
    let id = app.record_regression(deploy.id, now, &detail);
    assert!(app.store.finding(id).unwrap().unwrap().explanation.is_none(), "not explained yet");
    let sha = format!("{:0>40}", format!("{:x}", deploy.id * 7919));
    let explanation = json!({
        "suspects": [{
            "commit": {"sha": sha, "subject": "Apply promotions per item", "author": "Ada", "repository": repository},
            "score": 0.91,
            "reasons": ["the slow span's `code.function.name` `apply_promotions` is changed by this commit"],
            "files": ["checkout/promotions.py"],
            "review": review.map(|(kind, id)| json!({"kind": kind, "id": id, "title": "Promotions", "url": format!("https://forge.example.com/{id}")})),
        }],
        "ranking": {"separated": true, "range": {"repository": repository, "commits": 3}},
        "exemplars": {"before": {"typical": {"trace_id": "ab".repeat(16), "duration_ms": 118.0, "start": "2026-01-01T00:00:00Z"}},
                      "after": {"slowest": {"trace_id": "cd".repeat(16), "duration_ms": 410.0, "start": "2026-01-01T00:05:00Z"}}},
        "rollback": {"previous_version": "1.1.0", "commands": [format!("git revert --no-edit {sha}")]},
    });
    app.store.set_finding_explanation(id, &explanation.to_string(), true).unwrap();
    (deploy.id, id)
}

pub(crate) fn settings_with(
    changes: ChangeSettings,
    notifications: NotifySettings,
) -> server::Settings {
    server::Settings {
        public_url: Some("https://spanblame.example.com".into()),
        changes,
        notifications,
        ..TestApp::default_settings()
    }
}

fn quick_retries(max_attempts: u32) -> RetrySettings {
    RetrySettings {
        max_attempts,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(4),
    }
}

#[tokio::test]
async fn each_review_gets_one_comment_per_state_change_with_its_forges_auth() {
    let (recorder, base) = Recorder::start(0).await;
    let (changes, forges, repositories) = forges(&base);
    let notifications = NotifySettings {
        webhooks: vec![AlertSink {
            name: "chat".into(),
            url: format!("{base}/hook"),
            ..AlertSink::default()
        }],
        forges,
        repositories,
        services: vec![ServiceNotify {
            service: "quiet".into(),
            tier: 1,
            comments: false,
            alerts: false,
        }],
        retry: quick_retries(5),
        ..NotifySettings::default()
    };
    let app = TestApp::with_full_settings(settings_with(changes, notifications));
    let reviews = [
        ("gogs", Some(("gogs", "11"))),
        ("gitea", Some(("gitea", "12"))),
        ("github", None), // no review: the commit gets the comment
        ("gitlab", Some(("gitlab", "14"))),
        ("phabricator", Some(("phabricator", "D15"))),
    ];
    let mut made = Vec::new();
    for (kind, review) in reviews {
        let (deploy, finding) =
            regression(&app, &format!("svc-{kind}"), &format!("shop-{kind}"), review);
        made.push((kind, deploy, finding));
    }
    // A service whose owners turned notifications off.
    let (quiet_deploy, _) = regression(&app, "quiet", "shop-gitea", Some(("gitea", "99")));

    // Deciding twice (detection's call, then the job's pass) sends once.
    for (_, deploy, _) in &made {
        server::announce_deploy(&app.state, *deploy).unwrap();
    }
    assert_eq!(server::announce_deploy(&app.state, quiet_deploy).unwrap(), 0);
    server::announce_recent(&app.state).unwrap();
    server::deliver_due(&app.state).await.unwrap();
    server::announce_recent(&app.state).unwrap();
    assert_eq!(server::deliver_due(&app.state).await.unwrap(), 0, "nothing is decided twice");
    let sent = recorder.take();

    let of = |path: &str| -> Vec<&Recorded> { sent.iter().filter(|r| r.path == path).collect() };
    let one = |path: &str| -> &Recorded {
        let found = of(path);
        assert_eq!(
            found.len(),
            1,
            "{path}: {:?}",
            sent.iter().map(|r| &r.path).collect::<Vec<_>>()
        );
        found[0]
    };
    let sha = |deploy: u64| format!("{:0>40}", format!("{:x}", deploy * 7919));
    // Gogs and Gitea: `Authorization: token`, issue comments on the PR's number.
    let gogs = one("/gogs/api/v1/repos/acme/shop/issues/11/comments");
    assert_eq!(gogs.header("authorization"), "token token-gogs");
    let gitea = one("/gitea/api/v1/repos/acme/shop/issues/12/comments");
    assert_eq!(gitea.header("authorization"), "token token-gitea");
    let body = gitea.json()["body"].as_str().unwrap().to_owned();
    for needle in [
        "deploy 1.2.0 to prod",
        "p95 latency",
        "120 ms → 180 ms",
        "×1.50 (1.40 to 1.62)",
        "`apply_promotions` is changed by this commit",
        "https://spanblame.example.com/findings/",
        &format!("https://spanblame.example.com/traces/{}", "cd".repeat(16)),
        "git revert --no-edit",
    ] {
        assert!(body.contains(needle), "`{needle}` missing from the comment:\n{body}");
    }
    let gitea_status = one(&format!("/gitea/api/v1/repos/acme/shop/statuses/{}", sha(made[1].1)));
    assert_eq!(gitea_status.json()["state"], "failure");
    assert_eq!(gitea_status.json()["context"], "spanblame/svc-gitea/prod");
    // GitHub without a review: a commit comment and a status, Bearer auth and API headers.
    let github = one(&format!("/github/repos/acme/shop/commits/{}/comments", sha(made[2].1)));
    assert_eq!(github.header("authorization"), "Bearer token-github");
    assert_eq!(github.header("x-github-api-version"), "2022-11-28");
    assert_eq!(
        one(&format!("/github/repos/acme/shop/statuses/{}", sha(made[2].1))).json()["state"],
        "failure"
    );
    // GitLab: PRIVATE-TOKEN, merge request notes, `failed` statuses.
    let gitlab = one("/gitlab/api/v4/projects/acme%2Fshop/merge_requests/14/notes");
    assert_eq!(gitlab.header("private-token"), "token-gitlab");
    assert!(gitlab.json()["body"].as_str().unwrap().contains("POST /cart"));
    assert_eq!(
        one(&format!("/gitlab/api/v4/projects/acme%2Fshop/statuses/{}", sha(made[3].1))).json()["state"],
        "failed"
    );
    // Phabricator: a form, the token inside `params`, a comment transaction in Remarkup.
    let phab = one("/phabricator/api/differential.revision.edit");
    assert_eq!(phab.header("content-type"), "application/x-www-form-urlencoded");
    let params = phab.conduit_params();
    assert_eq!(params["__conduit__"]["token"], PHAB_TOKEN);
    assert_eq!(params["objectIdentifier"], "D15");
    assert_eq!(params["transactions"][0]["type"], "comment");
    assert!(
        params["transactions"][0]["value"]
            .as_str()
            .unwrap()
            .contains("[[https://spanblame.example.com/findings/")
    );
    // One firing webhook alert per finding, with the standard name and an idempotency key.
    let hooks = of("/hook");
    assert_eq!(hooks.len(), made.len());
    for hook in &hooks {
        assert_eq!(hook.json()["alertname"], "spanblame_latency_regression");
        assert_eq!(hook.json()["status"], "firing");
        assert!(
            hook.json()["text"].as_str().unwrap().starts_with("[CRITICAL] Regression:")
                || hook.json()["text"].as_str().unwrap().starts_with("[WARNING] Regression:")
        );
        assert!(hook.header("idempotency-key").starts_with("alert:"));
    }
    assert_eq!(sent.len(), 5 + 3 + 5, "comments, statuses and alerts, nothing for `quiet`");
    assert!(sent.iter().all(|r| r.method == "POST"));

    // Resolving (by a person here) sends one resolution per target and alert.
    app.clock.set(app.clock.get() + 60 * SECOND);
    for (_, _, finding) in &made {
        let (status, body) = app
            .post_json(
                &format!("/api/v1/findings/{finding}/resolve"),
                &json!({"by": "oncall", "note": "rolled back"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    server::deliver_due(&app.state).await.unwrap();
    server::announce_recent(&app.state).unwrap();
    server::deliver_due(&app.state).await.unwrap();
    let resolved = recorder.take();
    assert_eq!(
        resolved.len(),
        5 + 3 + 5,
        "{:?}",
        resolved.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    let gitea = resolved
        .iter()
        .find(|r| r.path == "/gitea/api/v1/repos/acme/shop/issues/12/comments")
        .unwrap();
    let text = gitea.json()["body"].as_str().unwrap().to_owned();
    assert!(
        text.contains("are resolved") && text.contains("resolved by oncall: rolled back"),
        "{text}"
    );
    assert!(resolved.iter().any(|r| r.path.starts_with("/github/repos/acme/shop/statuses/")
        && r.json()["state"] == "success"));
    assert!(
        resolved.iter().filter(|r| r.path == "/hook").all(|r| r.json()["status"] == "resolved")
    );

    // The API and the finding show what was sent.
    let (status, list) = app.get(&format!("/api/v1/notifications?deploy={}", made[1].1)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let rows = list["notifications"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "comment, status and alert, firing and resolved: {list}");
    assert!(rows.iter().all(|r| r["state"] == "delivered" && r["attempts"] == 1), "{list}");
    let (_, finding) = app.get(&format!("/api/v1/findings/{}", made[1].2)).await;
    let targets: Vec<&str> = finding["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["target"].as_str().unwrap())
        .collect();
    assert!(
        targets.contains(&"PR #12") && targets.contains(&"spanblame_latency_regression"),
        "{targets:?}"
    );
    let (status, page) = app.get(&format!("/findings/{}", made[1].2)).await;
    assert_eq!(status, StatusCode::OK);
    let page = page.as_str().unwrap();
    assert!(
        page.contains("comment to PR #12 via <code>forge:gitea-main</code>, 1 attempt"),
        "the finding page shows its notifications"
    );
    let (status, error) = app.get("/api/v1/notifications?state=lost").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pending, delivered, dead or superseded")
    );
}

#[tokio::test]
async fn a_receiver_failing_five_times_gets_the_message_once_even_across_a_restart() {
    let (recorder, base) = Recorder::start(5).await;
    let (changes, forges, repositories) = forges(&base);
    let notifications = NotifySettings {
        forges,
        repositories,
        retry: quick_retries(8),
        ..NotifySettings::default()
    };
    let app = TestApp::with_full_settings(settings_with(changes, notifications));
    let (deploy, _) = regression(&app, "checkout", "shop-gogs", Some(("gogs", "7")));
    server::announce_deploy(&app.state, deploy).unwrap();

    // The server stops between the decision and the first delivery.
    let app = app.restart();
    let mut attempts = 0;
    for _ in 0..10 {
        attempts += server::deliver_due(&app.state).await.unwrap();
        app.clock.set(app.clock.get() + 5 * SECOND); // past the largest back-off
    }
    let sent = recorder.take();
    assert_eq!(attempts, 6, "five failures, then one success");
    assert_eq!(sent.len(), 6);
    assert!(sent.iter().all(|r| r.path == "/gogs/api/v1/repos/acme/shop/issues/7/comments"));
    assert!(sent.windows(2).all(|w| w[0].body == w[1].body), "the same message every time");
    let (_, list) = app.get(&format!("/api/v1/notifications?deploy={deploy}")).await;
    let row = &list["notifications"][0];
    assert_eq!(
        (&row["state"], &row["attempts"], &row["last_status"]),
        (&json!("delivered"), &json!(6), &json!(201)),
        "{list}"
    );

    // Deciding again after the restart adds nothing.
    server::announce_recent(&app.state).unwrap();
    assert_eq!(server::deliver_due(&app.state).await.unwrap(), 0);
}

#[tokio::test]
async fn a_receiver_that_never_recovers_is_dead_lettered_and_can_be_retried() {
    let (recorder, base) = Recorder::start(usize::MAX).await;
    let notifications = NotifySettings {
        webhooks: vec![AlertSink {
            name: "chat".into(),
            url: format!("{base}/hook"),
            ..AlertSink::default()
        }],
        retry: quick_retries(3),
        ..NotifySettings::default()
    };
    let app = TestApp::with_full_settings(settings_with(ChangeSettings::default(), notifications));
    let (deploy, finding) = regression(&app, "checkout", "shop", None);
    server::announce_deploy(&app.state, deploy).unwrap();
    for _ in 0..6 {
        server::deliver_due(&app.state).await.unwrap();
        app.clock.set(app.clock.get() + 5 * SECOND);
    }
    assert_eq!(recorder.take().len(), 3, "max_attempts");
    let (_, metrics, _) = app.get_page("/metrics").await;
    let dead = "spanblame_notifications{receiver=\"webhook:chat\",state=\"dead\"} 1";
    assert!(metrics.contains(dead), "{metrics}");
    let (_, full) = app.get(&format!("/api/v1/findings/{finding}")).await;
    let row = &full["notifications"][0];
    assert_eq!((&row["state"], &row["last_status"]), (&json!("dead"), &json!(503)), "{full}");
    assert!(row["last_error"].as_str().unwrap().contains("503"), "{row}");

    let id = row["id"].as_u64().unwrap();
    recorder.fail_first.store(0, Ordering::SeqCst);
    let (status, retried) =
        app.post_json(&format!("/api/v1/notifications/{id}/retry"), &json!({})).await;
    assert_eq!((status, &retried["state"]), (StatusCode::OK, &json!("pending")), "{retried}");
    server::deliver_due(&app.state).await.unwrap();
    assert_eq!(recorder.take().len(), 1);
    let (status, again) =
        app.post_json(&format!("/api/v1/notifications/{id}/retry"), &json!({})).await;
    assert_eq!(
        (status, &again["error"]["code"]),
        (StatusCode::CONFLICT, &json!("conflict")),
        "{again}"
    );
}

/// The Standard Webhooks specification's example secret.
const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Verifies a recorded webhook with the `standardwebhooks` Python package (an implementation
/// that is not spanblame's): `Ok` when it accepts the body and headers as signed.
fn verify_independently(hook: &Recorded, body: &[u8]) -> Result<(), String> {
    let python = std::env::var("SPANBLAME_TEST_PYTHON").expect(
        "SPANBLAME_TEST_PYTHON is not set: run the tests with `cargo xtask test`, which installs the `standardwebhooks` package",
    );
    let headers: serde_json::Map<String, Value> =
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .iter()
            .map(|name| (name.to_string(), Value::from(hook.header(name))))
            .collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("body"), body).unwrap();
    std::fs::write(dir.path().join("headers.json"), Value::Object(headers).to_string()).unwrap();
    let script = "import json, sys\n\
from standardwebhooks.webhooks import Webhook\n\
body = open(sys.argv[2], 'rb').read()\n\
headers = json.load(open(sys.argv[3]))\n\
Webhook(sys.argv[1]).verify(body, headers)\n";
    let output = Command::new(python)
        .args(["-c", script, SIGNING_SECRET])
        .arg(dir.path().join("body"))
        .arg(dir.path().join("headers.json"))
        .output()
        .unwrap();
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test]
async fn webhook_alerts_are_signed_so_an_independent_verifier_refuses_a_forged_one() {
    // The first attempt fails: the retry must carry the same `webhook-id`.
    let (recorder, base) = Recorder::start(1).await;
    let notifications = NotifySettings {
        webhooks: vec![AlertSink {
            name: "chat".into(),
            url: format!("{base}/hook"),
            signing_secret: Some(SIGNING_SECRET.trim_start_matches("whsec_").into()),
            auth: Some(SinkAuth::Bearer("chat-token".into())),
        }],
        retry: quick_retries(3),
        ..NotifySettings::default()
    };
    let app = TestApp::with_full_settings(settings_with(ChangeSettings::default(), notifications));
    // The verifier judges `webhook-timestamp` by its own clock (five minutes either way).
    let real_now = jiff::Timestamp::now().as_nanosecond() as u64;
    app.clock.set(real_now);
    let (deploy, _) = regression(&app, "checkout", "shop", None);
    server::announce_deploy(&app.state, deploy).unwrap();
    server::deliver_due(&app.state).await.unwrap();
    app.clock.set(real_now + 5 * SECOND);
    server::deliver_due(&app.state).await.unwrap();
    let hooks = recorder.take();
    assert_eq!(hooks.len(), 2, "a failed attempt, then the delivery");
    let (failed, hook) = (&hooks[0], &hooks[1]);
    assert_eq!(hook.header("webhook-id"), failed.header("webhook-id"), "one id per message");
    assert_eq!(hook.header("webhook-id"), hook.header("idempotency-key"));
    assert_ne!(hook.header("webhook-timestamp"), failed.header("webhook-timestamp"));
    assert!(hook.header("webhook-signature").starts_with("v1,"), "{:?}", hook.headers);
    assert_eq!(hook.header("authorization"), "Bearer chat-token");
    assert_eq!(hook.json()["alertname"], "spanblame_latency_regression");

    verify_independently(hook, &hook.body).unwrap();
    let mut forged = hook.body.clone();
    let at = forged.iter().position(|&b| b == b'1').unwrap();
    forged[at] = b'9';
    let refused = verify_independently(hook, &forged).unwrap_err();
    assert!(refused.contains("WebhookVerificationError"), "{refused}");
}

/// Debian's `prometheus-alertmanager`, on a free port with its data in a temporary directory.
struct Alertmanager {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Alertmanager's web configuration: HTTP Basic for `alerts` with this password's bcrypt hash
/// (`am-password-for-tests`, cost 4).
const AM_USER: &str = "spanblame";
const AM_PASSWORD: &str = "am-password-for-tests";
const AM_PASSWORD_BCRYPT: &str = "$2b$04$8K0l0unmamkaHD5d4pTy/uajBm2.nWThk4Z3QudNZNFzJz6XXQOXW";

impl Alertmanager {
    fn start() -> Alertmanager {
        let binary = std::env::var("SPANBLAME_TEST_ALERTMANAGER").expect(
            "SPANBLAME_TEST_ALERTMANAGER is not set: run the tests with `cargo xtask test` (it installs Debian's prometheus-alertmanager), or set it to /usr/bin/prometheus-alertmanager",
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("am.yml");
        std::fs::write(&config, "route:\n  receiver: default\nreceivers:\n  - name: default\n")
            .unwrap();
        let web = dir.path().join("web.yml");
        std::fs::write(&web, format!("basic_auth_users:\n  {AM_USER}: {AM_PASSWORD_BCRYPT}\n"))
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--web.config.file={}", web.display()))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus-alertmanager");
        let url = format!("http://127.0.0.1:{port}");
        let am = Alertmanager { child, url, _dir: dir };
        let client = reqwest::blocking::Client::new();
        for _ in 0..100 {
            if client
                .get(format!("{}/-/ready", am.url))
                .basic_auth(AM_USER, Some(AM_PASSWORD))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                return am;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("Alertmanager did not become ready at {}", am.url);
    }
}

/// The alerts an Alertmanager holds as active (`GET /api/v2/alerts`).
async fn active_alerts(url: &str) -> Vec<Value> {
    let client = reqwest::Client::new();
    let request = client.get(format!("{url}/api/v2/alerts"));
    let response = request.basic_auth(AM_USER, Some(AM_PASSWORD)).send().await.unwrap();
    let body: Value = response.json().await.unwrap();
    body.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn alertmanager_receives_the_firing_alert_and_its_resolution() {
    let am = tokio::task::spawn_blocking(Alertmanager::start).await.unwrap();
    // This Alertmanager takes alerts only with its HTTP Basic credentials.
    let anonymous = reqwest::get(format!("{}/api/v2/alerts", am.url)).await.unwrap();
    assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);
    let notifications = NotifySettings {
        alertmanagers: vec![AlertSink {
            name: "main".into(),
            url: am.url.clone(),
            auth: Some(SinkAuth::Basic { username: AM_USER.into(), password: AM_PASSWORD.into() }),
            ..AlertSink::default()
        }],
        services: vec![ServiceNotify {
            service: "checkout".into(),
            tier: 1,
            comments: true,
            alerts: true,
        }],
        ..NotifySettings::default()
    };
    let app = TestApp::with_full_settings(settings_with(ChangeSettings::default(), notifications));
    // Alertmanager judges `endsAt` by its own clock: run this server's clock at the real time.
    let real_now = jiff::Timestamp::now().as_nanosecond() as u64;
    assert!(real_now > T0);
    app.clock.set(real_now);
    let (deploy, finding) = regression(&app, "checkout", "shop", None);
    server::announce_deploy(&app.state, deploy).unwrap();
    assert_eq!(server::deliver_due(&app.state).await.unwrap(), 1);

    let alerts = active_alerts(&am.url).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let labels = &alerts[0]["labels"];
    assert_eq!(labels["alertname"], "spanblame_latency_regression");
    assert_eq!(labels["service"], "checkout");
    assert_eq!(labels["environment"], "prod");
    assert_eq!(labels["operation"], "POST /cart");
    assert_eq!(labels["severity"], "critical", "×1.5 on a tier-1 service");
    assert_eq!(labels["deploy"], deploy.to_string());
    assert!(labels["commit"].as_str().unwrap().starts_with("c0ffee"));
    assert_eq!(alerts[0]["status"]["state"], "active");
    assert_eq!(
        alerts[0]["generatorURL"],
        format!("https://spanblame.example.com/findings/{finding}")
    );

    // A refresh period later the alert is sent again (Alertmanager would expire it otherwise).
    app.clock.set(real_now + 16 * 60 * SECOND);
    server::announce_deploy(&app.state, deploy).unwrap();
    assert_eq!(server::deliver_due(&app.state).await.unwrap(), 1);

    // Resolved: Alertmanager gets `endsAt` = the resolution time (by its clock, now) and lists
    // the alert no more.
    app.clock.set(jiff::Timestamp::now().as_nanosecond() as u64);
    let (status, body) = app
        .post_json(
            &format!("/api/v1/findings/{finding}/resolve"),
            &json!({"note": "fixed in 1.2.1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server::deliver_due(&app.state).await.unwrap(), 1);
    let alerts = active_alerts(&am.url).await;
    assert!(alerts.is_empty(), "resolved alerts are not active: {alerts:?}");
}
