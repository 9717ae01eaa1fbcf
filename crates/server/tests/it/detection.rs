//! The detection job under a manual clock: a slower version is found within minutes of its
//! deploy (looks every minute, nothing before deploy + 2 min), an unchanged one never, a
//! later deploy that restores latency resolves the finding by itself, and a deploy recorded
//! late is evaluated on the data already stored.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::{SECOND, T0, TestApp};

const MINUTE: u64 = 60 * SECOND;

/// Two `GET /cart` spans a second of `version` from `from` to `to`, around `median_ms`.
async fn traffic(app: &TestApp, version: &str, from: u64, to: u64, median_ms: f64) {
    let mut spans = Vec::new();
    let mut t = from;
    let mut n: u64 = from / 1_000_000;
    while t < to {
        n += 1;
        // A fixed, spread pattern of durations: 0.8x .. 1.25x the median.
        let factor = 0.8 * (1.25f64 / 0.8).powf(((n * 7919) % 1000) as f64 / 1000.0);
        let nanos = (median_ms * 1e6 * factor) as u64;
        spans.push(json!({
            "traceId": format!("{n:032x}"), "spanId": format!("{n:016x}"), "name": "GET /cart/{id}", "kind": 2,
            "startTimeUnixNano": t.to_string(), "endTimeUnixNano": (t + nanos).to_string(),
            "attributes": [{"key": "http.route", "value": {"stringValue": "/cart/{id}"}}],
        }));
        if spans.len() == 2_000 {
            send(app, version, std::mem::take(&mut spans)).await;
        }
        t += SECOND / 2;
    }
    send(app, version, spans).await;
}

async fn send(app: &TestApp, version: &str, spans: Vec<Value>) {
    if spans.is_empty() {
        return;
    }
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "cart"}},
            {"key": "service.version", "value": {"stringValue": version}},
            {"key": "deployment.environment.name", "value": {"stringValue": "production"}},
        ]},
        "scopeSpans": [{"spans": spans}],
    }]});
    let (status, response) = app.post_json("/v1/traces", &body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
}

async fn deploy(app: &TestApp, version: &str, at: u64) -> u64 {
    let started = jiff::Timestamp::from_nanosecond(i128::from(at)).unwrap().to_string();
    let body = json!({"service": "cart", "environment": "production", "version": version, "started_at": started});
    let (status, response) = app.post_json("/api/v1/deploys", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{response}");
    response["id"].as_u64().unwrap()
}

/// Runs the detection job at `now`.
fn detect_at(app: &TestApp, now: u64) {
    app.clock.set(now);
    server::run_maintenance_once(&app.state, false).unwrap();
    server::evaluate_due(&app.state).unwrap();
}

async fn findings(app: &TestApp, query: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/api/v1/findings?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["findings"].as_array().unwrap().clone()
}

#[tokio::test]
async fn regressions_are_found_within_minutes_and_resolved_by_the_deploy_that_restores_them() {
    let app = TestApp::new();
    let d2 = T0;
    traffic(&app, "v1", d2 - 70 * MINUTE, d2, 50.0).await;
    let first = deploy(&app, "v1", d2 - 75 * MINUTE).await;
    let second = deploy(&app, "v2", d2).await;
    traffic(&app, "v2", d2 + SECOND, d2 + 30 * MINUTE, 65.0).await; // 30% slower

    // Nothing before deploy + 2 minutes, then a look each minute until the regression shows.
    detect_at(&app, d2 + 90 * SECOND);
    assert!(findings(&app, "verdict=regressed").await.is_empty());
    let mut found_at = None;
    for minute in 2..=30 {
        detect_at(&app, d2 + minute * MINUTE);
        let regressed =
            findings(&app, "service=cart&environment=production&verdict=regressed").await;
        if let Some(f) = regressed.iter().find(|f| f["metric"] == "latency_p50") {
            assert_eq!(
                (f["deploy_id"].as_u64(), f["look_minutes"].as_u64()),
                (Some(second), Some(minute))
            );
            found_at = Some(minute);
            break;
        }
    }
    let found_at = found_at.expect("a 30% slowdown at 2 spans/s is found within 30 minutes");
    assert!(found_at <= 10, "found only after {found_at} minutes");
    let (_, all) = app.get("/api/v1/findings?service=cart&verdict=regressed").await;
    let regressed = all["findings"].as_array().unwrap();
    assert!(regressed.iter().all(|f| f["deploy_id"] == second && f["is_final"] == true), "{all}");
    // The first deploy had nothing before it: inconclusive, never a silent pass.
    let (_, first_findings) = app.get("/api/v1/findings?verdict=inconclusive").await;
    assert!(first_findings["findings"].as_array().unwrap().iter().any(
        |f| f["deploy_id"] == first && f["reason"].as_str().unwrap().contains("needs at least")
    ));
    // Only a regression asks for attention: other verdicts have no status, are never listed
    // as open, and cannot be acknowledged.
    let other = &first_findings["findings"][0];
    assert_eq!(other["status"], "none", "{other}");
    let open = findings(&app, "status=open").await;
    assert!(!open.is_empty() && open.iter().all(|f| f["verdict"] == "regressed"), "{open:?}");
    let (status, body) =
        app.post_json(&format!("/api/v1/findings/{}/acknowledge", other["id"]), &json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("not a regression"), "{body}");

    // Without a mirror there are no suspects, and the finding says why.
    let id = regressed[0]["id"].as_u64().unwrap();
    let (status, full) = app.get(&format!("/api/v1/findings/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(full["suspects"], json!([]));
    assert!(
        full["ranking"]["unavailable"]
            .as_str()
            .unwrap()
            .contains("commit of version `v2` is unknown"),
        "{full}"
    );
    assert!(full["exemplars"]["after"]["slowest"]["trace_id"].is_string(), "{full}");

    // The deploy's regressions are one incident, acknowledged (with who, when and why) and
    // reopened once for all of them.
    let (status, incidents) = app.get("/api/v1/incidents").await;
    assert_eq!(status, StatusCode::OK, "{incidents}");
    let incidents = incidents["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "one incident for one bad deploy: {incidents:?}");
    assert_eq!(incidents[0]["id"], second);
    assert_eq!(incidents[0]["status"], "open");
    assert_eq!(incidents[0]["regression_count"], regressed.len());
    assert_eq!(incidents[0]["version"], "v2");
    let (status, acked) = app
        .post_json(
            &format!("/api/v1/incidents/{second}/acknowledge"),
            &json!({"by": "alice", "note": "rolling back to v1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{acked}");
    assert_eq!(acked["status"], "acknowledged", "{acked}");
    assert_eq!(acked["status_by"], "alice");
    assert_eq!(acked["status_note"], "rolling back to v1");
    assert!(acked["status_changed"].is_string(), "{acked}");
    assert_eq!(acked["regressions"].as_array().unwrap().len(), regressed.len(), "{acked}");
    assert!(acked["deploy"]["version"] == "v2" && acked["rollback"].is_null(), "{acked}");
    assert!(findings(&app, "service=cart&verdict=regressed&status=open").await.is_empty());
    let (_, open) = app.get("/api/v1/incidents").await;
    assert_eq!(open["incidents"], json!([]), "open by default");
    let (_, acknowledged) = app.get("/api/v1/incidents?status=acknowledged").await;
    assert_eq!(acknowledged["incidents"][0]["id"], second);
    let (status, reopened) =
        app.post_json(&format!("/api/v1/incidents/{second}/reopen"), &json!({})).await;
    assert_eq!((status, reopened["status"].as_str()), (StatusCode::OK, Some("open")));
    let (status, body) =
        app.post_json(&format!("/api/v1/incidents/{first}/resolve"), &json!({})).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a deploy without regressions is no incident: {body}"
    );
    let (status, body) = app.get("/api/v1/incidents?status=closed").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // v3 restores the old speed; once its verdict is final (a decisive improvement, or the
    // last look), v2's regressions resolve.
    traffic(&app, "v2", d2 + 30 * MINUTE, d2 + 40 * MINUTE, 65.0).await;
    let third = deploy(&app, "v3", d2 + 40 * MINUTE).await;
    traffic(&app, "v3", d2 + 40 * MINUTE + SECOND, d2 + 101 * MINUTE, 50.0).await;
    detect_at(&app, d2 + 41 * MINUTE);
    let open = findings(&app, "service=cart&verdict=regressed&status=open").await;
    assert!(!open.is_empty(), "before v3's first look nothing is resolved");
    detect_at(&app, d2 + 70 * MINUTE);
    assert!(findings(&app, "service=cart&verdict=regressed&status=open").await.is_empty());
    let (_, resolved) = app.get(&format!("/api/v1/findings/{id}")).await;
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    assert_eq!(resolved["status_by"], format!("deploy {third} (v3)"));
    assert!(resolved["status_note"].as_str().unwrap().contains("is back to"), "{resolved}");
    let (_, incident) = app.get(&format!("/api/v1/incidents/{second}")).await;
    assert_eq!(incident["status"], "resolved", "the fixing deploy resolves the incident");
    assert_eq!(incident["status_by"], format!("deploy {third} (v3)"));
    // v3 against v2 is an improvement, not a regression.
    let improved = findings(&app, "verdict=improved").await;
    assert!(improved.iter().any(|f| f["deploy_id"] == third), "{improved:?}");
}

#[tokio::test]
async fn a_fast_operation_forty_percent_slower_is_a_minor_regression_not_no_change() {
    // 5 ms → 7 ms: the interval excludes no change, but 2 ms is under the 5 ms floor.
    let app = TestApp::new();
    let d = T0;
    traffic(&app, "v1", d - 60 * MINUTE, d, 5.0).await;
    deploy(&app, "v1", d - 61 * MINUTE).await;
    let second = deploy(&app, "v2", d).await;
    traffic(&app, "v2", d + SECOND, d + 30 * MINUTE, 7.0).await;
    for minute in 2..=30 {
        detect_at(&app, d + minute * MINUTE);
    }
    let regressed = findings(&app, "verdict=regressed").await;
    let p50 = regressed
        .iter()
        .find(|f| f["metric"] == "latency_p50" && f["deploy_id"] == second)
        .unwrap_or_else(|| panic!("a minor regression on p50: {regressed:?}"));
    assert_eq!(p50["severity"], "minor", "{p50}");
    let reason = p50["minor_reason"].as_str().unwrap();
    assert!(reason.starts_with('+') && reason.contains("below the 5.0 ms floor"), "{reason}");
    let effect = p50["effect"]["estimate"].as_f64().unwrap();
    assert!((1.3..1.5).contains(&effect), "{p50}");
    assert!(findings(&app, "severity=major&verdict=regressed").await.is_empty());
    assert_eq!(findings(&app, "severity=minor").await.len(), regressed.len());
    // The finding page says so, and why it stays quiet.
    let (status, page, _) = app.get_page(&format!("/findings/{}", p50["id"])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(">minor</span>") && page.contains("Minor: +"), "{page}");
    // Minor findings open no incident (and so no alert or comment).
    let (_, incidents) = app.get("/api/v1/incidents?status=all").await;
    assert_eq!(incidents["incidents"], json!([]), "{incidents}");
}

#[tokio::test]
async fn an_unchanged_deploy_finds_nothing_and_the_api_names_bad_parameters() {
    let app = TestApp::new();
    let d = T0;
    traffic(&app, "v1", d - 60 * MINUTE, d, 40.0).await;
    deploy(&app, "v1", d - 61 * MINUTE).await;
    deploy(&app, "v2", d).await;
    traffic(&app, "v2", d + SECOND, d + 60 * MINUTE, 40.0).await;
    for minute in 2..=60 {
        detect_at(&app, d + minute * MINUTE);
    }
    for verdict in ["regressed", "improved"] {
        assert!(findings(&app, &format!("verdict={verdict}")).await.is_empty(), "{verdict}");
    }
    let no_change = findings(&app, "verdict=no_change&service=cart").await;
    assert!(no_change.iter().any(|f| f["metric"] == "latency_p95" && f["is_final"] == true));

    for (query, fragment) in [
        ("verdict=worse", "not one of regressed"),
        ("since=yesterday", "RFC 3339"),
        ("limit=0", "between 1 and"),
        ("colour=red", "unknown parameter `colour`"),
        ("status=closed", "open, acknowledged, resolved"),
    ] {
        let (status, body) = app.get(&format!("/api/v1/findings?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(body["error"]["message"].as_str().unwrap().contains(fragment), "{query}: {body}");
    }
    let (status, _) = app.get("/api/v1/findings/abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let page = findings(&app, "limit=2").await;
    let (_, first_page) = app.get("/api/v1/findings?limit=2").await;
    let next = first_page["next"].as_str().unwrap();
    let second_page = findings(&app, &format!("limit=2&next={next}")).await;
    assert!(second_page[0]["id"].as_u64() < page[1]["id"].as_u64());
}
