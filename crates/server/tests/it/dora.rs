//! DORA metrics on a scripted history: a real git repository (commits with chosen author
//! times) mirrored by the server, deploys reported through the API, regressions attributed to
//! two of them (one restored by the next deploy, one still open). The API and the page must
//! give the numbers computed by hand in the comments below.

use axum::http::StatusCode;
use mirror::testing::{commit_file, git};
use serde_json::json;
use server::{ChangeSettings, MirrorSettings, MirrorSource, RepositorySettings, ServiceOwnership};
use store::FindingStatus;

use crate::support::{SECOND, T0, TestApp};

const HOUR: u64 = 3600 * SECOND;
const DAY: u64 = 24 * HOUR;

fn at(unix_nanos: u64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(unix_nanos)).unwrap().to_string()
}

/// A one-file commit authored at `time`.
fn commit_at(dir: &std::path::Path, n: u32, time: u64) -> String {
    commit_file(dir, "cart.rs", &format!("fn total() {{ {n} }}\n"), &format!("change {n}"));
    git(dir, &["commit", "-q", "--amend", "--no-edit", &format!("--date={}", at(time))]);
    git(dir, &["rev-parse", "HEAD"])
}

async fn deploy(app: &TestApp, service: &str, version: &str, commit: &str, started: u64) -> u64 {
    let body = json!({"service": service, "environment": "prod", "version": version,
        "commit": commit, "started_at": at(started)});
    let (status, answer) = app.post_json("/api/v1/deploys", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["id"].as_u64().unwrap()
}

#[tokio::test]
async fn dora_on_a_scripted_history_matches_the_hand_computed_numbers() {
    let upstream = tempfile::tempdir().unwrap();
    let up = upstream.path();
    git(up, &["init", "-q", "-b", "main"]);
    let c0 = commit_at(up, 0, T0 - 5 * DAY);
    let c1 = commit_at(up, 1, T0 + HOUR);
    let c2 = commit_at(up, 2, T0 + 3 * HOUR);
    let c3 = commit_at(up, 3, T0 + DAY);
    let c4 = commit_at(up, 4, T0 + DAY + 12 * HOUR);
    let c5 = commit_at(up, 5, T0 + 3 * DAY);
    let _ = c1;

    let mirrors_dir = tempfile::tempdir().unwrap();
    let repository = RepositorySettings {
        name: "shop".into(),
        mirror: Some(MirrorSource::Clone(up.to_str().unwrap().to_owned())),
        ..RepositorySettings::default()
    };
    let owner = |service: &str, team: &str| ServiceOwnership {
        service: service.into(),
        deploy_from: Vec::new(),
        repository: Some("shop".into()),
        path_prefix: None,
        team: Some(team.into()),
    };
    let app = TestApp::with_changes(ChangeSettings {
        repositories: vec![repository.clone()],
        services: vec![owner("cart", "payments"), owner("search", "discovery")],
        mirrors: MirrorSettings { dir: mirrors_dir.path().to_owned(), ..MirrorSettings::default() },
        ..ChangeSettings::default()
    });
    server::sync_once(&app.state, &repository).unwrap();

    // Before the window: the baseline deploy.
    deploy(&app, "cart", "1.0.0", &c0, T0 - DAY).await;
    // In the window [T0, T0 + 14 days):
    // D1 ships c1 and c2: lead times 4 h and 2 h.
    deploy(&app, "cart", "1.1.0", &c2, T0 + 5 * HOUR).await;
    // D2 ships c3 (10 h) and regresses, found an hour later...
    let d2 = deploy(&app, "cart", "1.2.0", &c3, T0 + DAY + 10 * HOUR).await;
    let found = app.record_regression(d2, T0 + DAY + 11 * HOUR, &json!({}));
    // ... and D3 ships c4 (12 h) and restores it: 13 h after the finding.
    let d3 = deploy(&app, "cart", "1.3.0", &c4, T0 + 2 * DAY).await;
    app.store
        .set_finding_status(
            found,
            FindingStatus::Resolved,
            &format!("deploy {d3} (1.3.0)"),
            None,
            T0 + 2 * DAY + 5 * HOUR,
        )
        .unwrap();
    // D4 ships c5 (6 days = 144 h) and regresses; still open.
    let d4 = deploy(&app, "cart", "1.4.0", &c5, T0 + 9 * DAY).await;
    app.record_regression(d4, T0 + 9 * DAY + HOUR, &json!({}));
    // Another team's service: left out when asking for `payments`.
    deploy(&app, "search", "7", &c5, T0 + 10 * DAY).await;

    app.clock.set(T0 + 14 * DAY);
    let (status, dora) = app.get("/api/v1/dora?team=payments&environment=prod&window=14d").await;
    assert_eq!(status, StatusCode::OK, "{dora}");
    assert_eq!(dora["services"], json!(["cart"]));
    // 4 deploys in 14 days; on days 0, 1, 2 and 9: the last week (days 7–13) has 1 day with
    // a deploy, the week before 3; the median week has 2: high ("the median week has one").
    let frequency = &dora["deployment_frequency"];
    assert_eq!(frequency["deployments"], 4);
    assert_eq!(frequency["per_day"], 0.29);
    assert_eq!(frequency["median_deploy_days_per_week"], 2.0);
    assert_eq!(frequency["band"], "high");
    // Lead times 2, 4, 10, 12, 144 h: the median is 10 h, under a day: elite.
    let lead = &dora["lead_time_for_changes"];
    assert_eq!(
        (&lead["median_hours"], &lead["changes"], &lead["band"]),
        (&json!(10.0), &json!(5), &json!("elite")),
        "{lead}"
    );
    // 2 of 4 deploys failed: 50 %, low.
    let failures = &dora["change_failure_rate"];
    assert_eq!(
        (&failures["rate"], &failures["failed_deployments"], &failures["band"]),
        (&json!(0.5), &json!(2), &json!("low"))
    );
    // One restored after 13 h (high), one still open.
    let restore = &dora["time_to_restore"];
    assert_eq!(
        (&restore["median_hours"], &restore["restored"], &restore["unrestored"], &restore["band"]),
        (&json!(13.0), &json!(1), &json!(1), &json!("high")),
        "{restore}"
    );
    assert!(
        dora["bands"]["lead_time_for_changes"]["source"].as_str().unwrap().contains("DORA 2024")
    );

    // Every service: the search deploy counts too (its range is c4..c5 after nothing: c5 alone).
    let (_, all) = app.get("/api/v1/dora?window=14d").await;
    assert_eq!(all["deployment_frequency"]["deployments"], 5);
    assert_eq!(all["services"], json!(["cart", "search"]));

    // The page shows the same numbers.
    let (status, page) = app.get("/dora?team=payments&environment=prod&window=14d").await;
    assert_eq!(status, StatusCode::OK);
    let page = page.as_str().unwrap();
    for text in ["0.29 / day", "10 h", "50%", "13 h", "1 still open", "Team payments"] {
        assert!(page.contains(text), "`{text}` missing from the DORA page");
    }
    let (status, error) = app.get("/api/v1/dora?window=2y").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error["error"]["message"].as_str().unwrap().contains("from 1d to 365d"), "{error}");
}
