//! `/metrics` as an operator's Prometheus reads it: every family the shipped alerting rules
//! and dashboard use is there, `promtool` accepts the exposition and the rules, and each
//! family moves when its event happens: a deploy looked at, a notification dead-lettered, a
//! mirror fetched and then failing, a span written and sealed, a trace read and a search, an
//! audited request.

use std::time::Duration;

use mirror::testing::{commit_file, git};
use server::{
    AlertSink, ChangeSettings, MirrorSettings, MirrorSource, NotifySettings, RepositorySettings,
    RetrySettings,
};

use crate::notify::{regression, settings_with};
use crate::recorder::Recorder;
use crate::support::{SECOND, TestApp, promtool_accepts};

/// The families `docs/alerts.yml` and `docs/grafana-dashboard.json` read, besides the ingest
/// and storage ones that were there before.
const FAMILIES: [&str; 20] = [
    "spanblame_build_info",
    "spanblame_http_requests_total",
    "spanblame_http_request_duration_seconds",
    "spanblame_wal_write_seconds",
    "spanblame_block_seal_seconds",
    "spanblame_compaction_seconds",
    "spanblame_query_duration_seconds",
    "spanblame_detection_passes_total",
    "spanblame_detection_last_pass_timestamp_seconds",
    "spanblame_detection_deploys_under_evaluation",
    "spanblame_detection_oldest_due_look_lag_seconds",
    "spanblame_detection_looks_total",
    "spanblame_explanation_seconds",
    "spanblame_findings_total",
    "spanblame_notification_attempts_total",
    "spanblame_mirror_last_success_timestamp_seconds",
    "spanblame_mirror_fetch_failures_total",
    "spanblame_background_lease_held",
    "spanblame_audit_records_total",
    "spanblame_retention_disk_budget_bytes",
];

/// The value of one series (its name and labels exactly as written), if present.
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn has_family(metrics: &str, family: &str) -> bool {
    metrics.contains(&format!("# TYPE {family} "))
}

#[tokio::test]
async fn each_family_moves_when_its_event_happens() {
    let upstream = tempfile::tempdir().unwrap();
    let up = upstream.path();
    git(up, &["init", "-q", "-b", "main"]);
    commit_file(up, "cart.rs", "fn total() {}\n", "add cart");
    let mirrors = tempfile::tempdir().unwrap();
    let repository = RepositorySettings {
        name: "cart".into(),
        mirror: Some(MirrorSource::Clone(up.to_str().unwrap().to_owned())),
        ..RepositorySettings::default()
    };
    let changes = ChangeSettings {
        repositories: vec![repository.clone()],
        mirrors: MirrorSettings { dir: mirrors.path().to_owned(), ..MirrorSettings::default() },
        ..ChangeSettings::default()
    };
    // A receiver that always answers 503, given one attempt.
    let (_recorder, base) = Recorder::start(usize::MAX).await;
    let notifications = NotifySettings {
        webhooks: vec![AlertSink {
            name: "chat".into(),
            url: format!("{base}/hook"),
            ..AlertSink::default()
        }],
        retry: RetrySettings {
            max_attempts: 1,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(1),
        },
        ..NotifySettings::default()
    };
    let mut settings = settings_with(changes, notifications);
    settings.retention.disk_budget_bytes = Some(10 << 30);
    let app = TestApp::with_full_settings(settings);

    let (_, before, _) = app.get_page("/metrics").await;
    for family in FAMILIES {
        assert!(has_family(&before, family), "no `{family}` family\n{before}");
    }
    assert_eq!(value(&before, "spanblame_detection_looks_total"), Some(0.0));
    assert_eq!(value(&before, "spanblame_retention_disk_budget_bytes"), Some(10_737_418_240.0));

    // A deploy looked at: a pass, a look, and a deploy under evaluation.
    let deploy = app.record_deploy("cart", "2.0.0", None, app.clock.get() - 5 * 60 * SECOND);
    assert_eq!(server::evaluate_due(&app.state).unwrap(), 1, "deploy {}", deploy.id);
    // A notification dead-lettered at its only attempt.
    let (incident, _) = regression(&app, "checkout", "shop", None);
    server::announce_deploy(&app.state, incident).unwrap();
    server::deliver_due(&app.state).await.unwrap();
    // A mirror fetched, then failing once its upstream is gone.
    assert!(server::sync_once(&app.state, &repository).unwrap() > 0);
    std::fs::remove_dir_all(up.join(".git")).unwrap();
    assert!(server::sync_once(&app.state, &repository).is_err());
    // A span written through the WAL, then sealed into a block.
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let now = app.clock.get();
    let export = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "cart"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": trace, "spanId": "b7ad6b7169203331", "name": "GET /cart", "kind": 2,
            "startTimeUnixNano": (now - SECOND).to_string(), "endTimeUnixNano": now.to_string(),
        }]}],
    }]});
    let (status, answer) = app.post_json("/v1/traces", &export).await;
    assert_eq!(status, axum::http::StatusCode::OK, "{answer}");
    app.store.flush().unwrap();
    // Reads of the store, each an audited request.
    app.get(&format!("/api/v1/traces/{trace}")).await;
    app.get("/api/v1/traces?service=cart").await;

    let (_, after, _) = app.get_page("/metrics").await;
    promtool_accepts("/metrics", &after);
    let moved = |series: &str, by_at_least: f64| {
        let was = value(&before, series).unwrap_or(0.0);
        let is = value(&after, series).unwrap_or_else(|| panic!("no `{series}`\n{after}"));
        assert!(is >= was + by_at_least, "`{series}` went from {was} to {is}\n{after}");
    };
    moved("spanblame_detection_passes_total", 1.0);
    moved("spanblame_detection_looks_total", 1.0);
    moved("spanblame_detection_last_pass_timestamp_seconds", 1.0);
    moved("spanblame_detection_deploys_under_evaluation", 1.0);
    moved("spanblame_notification_attempts_total{receiver=\"webhook:chat\",outcome=\"dead\"}", 1.0);
    moved("spanblame_mirror_last_success_timestamp_seconds{repository=\"cart\"}", 1.0);
    moved("spanblame_mirror_fetch_failures_total{repository=\"cart\"}", 1.0);
    moved("spanblame_query_duration_seconds_count{kind=\"trace\"}", 1.0);
    moved("spanblame_query_duration_seconds_count{kind=\"search\"}", 1.0);
    moved("spanblame_audit_records_total", 2.0);
    moved("spanblame_wal_write_seconds_count", 1.0);
    moved("spanblame_block_seal_seconds_count", 1.0);
}

/// Every metric the dashboard and the rules name is a family `/metrics` writes, and
/// `promtool check rules` accepts the rules as shipped.
#[tokio::test]
async fn the_shipped_rules_and_dashboard_read_families_that_exist() {
    let app = TestApp::new();
    let (_, metrics, _) = app.get_page("/metrics").await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let rules = root.join("docs/alerts.yml");
    let dashboard = std::fs::read_to_string(root.join("docs/grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    exprs.push(std::fs::read_to_string(&rules).unwrap());
    for text in &exprs {
        let mut rest = text.as_str();
        // The earliest metric name left, whichever prefix it has.
        while let Some(at) = ["spanblame_", "process_"].iter().filter_map(|p| rest.find(p)).min() {
            let name: String =
                rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            rest = &rest[at + name.len()..];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            // The disk budget is written only when one is configured.
            if family == "spanblame_retention_disk_budget_bytes" {
                continue;
            }
            assert!(has_family(&metrics, family), "`{name}` is not on /metrics\n{metrics}");
        }
    }
    let Ok(promtool) = std::env::var("SPANBLAME_TEST_PROMTOOL") else {
        panic!("SPANBLAME_TEST_PROMTOOL is not set: run the tests with `cargo xtask test`");
    };
    let output =
        std::process::Command::new(promtool).args(["check", "rules"]).arg(&rules).output().unwrap();
    assert!(
        output.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
