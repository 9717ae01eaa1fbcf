//! MCP over streamable HTTP with the SDK's own client: it lists the tools and calls them as
//! an API token restricted to one team's service; data outside that scope is "not found" or
//! redacted exactly as in the API, a bad token cannot connect, and every call is audited. An
//! assistant flags a regression on its suspect's review only with the right to change that
//! service's findings, once, with the notifier's own comment.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::StatusCode;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Map, Value, json};
use server::{ChangeSettings, ForgeNotify, NotifySettings, ServiceOwnership};

use crate::notify::{forges, regression, settings_with};
use crate::recorder::Recorder;
use crate::support::{SECOND, T0, TestApp};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

async fn serve(app: &TestApp) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = server::router(Arc::clone(&app.state));
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap()
    });
    format!("http://{addr}/mcp")
}

async fn connect(
    url: &str,
    token: &str,
) -> Result<RunningService<RoleClient, ClientConfig>, rmcp::service::ClientInitializeError> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).auth_header(token),
    );
    ClientConfig::default().serve(transport).await
}

async fn call(
    client: &RunningService<RoleClient, ClientConfig>,
    tool: &'static str,
    arguments: Value,
) -> CallToolResult {
    let arguments: Map<String, Value> = serde_json::from_value(arguments).unwrap();
    client.call_tool(CallToolRequestParams::new(tool).with_arguments(arguments)).await.unwrap()
}

fn text(result: &CallToolResult) -> String {
    serde_json::to_string(&result.content).unwrap()
}

/// A regressed finding of `service` with a rollback draft.
fn finding(app: &TestApp, service: &str) -> u64 {
    let deploy = app.record_deploy(service, "2.0.0", None, T0 - 600 * SECOND);
    let detail = json!({"before": {"value_ms": 10.0, "spans": 900}, "after": {"value_ms": 15.0, "spans": 900}});
    let id = app.record_regression(deploy.id, T0, &detail);
    let explanation = json!({"suspects": [], "rollback": {"previous_version": "1.9.0", "commands": ["git revert --no-edit abc1234"]}});
    app.store.set_finding_explanation(id, &explanation.to_string(), true).unwrap();
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn an_assistant_sees_only_what_its_token_may_see() {
    let owner = |service: &str, team: &str| ServiceOwnership {
        service: service.into(),
        team: Some(team.into()),
        ..ServiceOwnership::default()
    };
    let app = TestApp::with_changes(ChangeSettings {
        services: vec![owner("checkout", "payments"), owner("search", "discovery")],
        ..ChangeSettings::default()
    });
    let ours = finding(&app, "checkout");
    let theirs = finding(&app, "search");
    // One trace through both services.
    app.export_span(TRACE, &[("service.name", "checkout")], T0 - 60 * SECOND).await;
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "search"}}]},
        "scopeSpans": [{"spans": [{"traceId": TRACE, "spanId": "1112131415161718", "parentSpanId": "0102030405060708",
            "name": "SELECT products", "kind": 3, "startTimeUnixNano": (T0 - 59 * SECOND).to_string(),
            "endTimeUnixNano": (T0 - 58 * SECOND).to_string(),
            "attributes": [{"key": "db.statement", "value": {"stringValue": "SELECT secret"}}]}]}]}]});
    let (status, answer) = app.post_json("/v1/traces", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, token) = app
        .post_json(
            "/api/v1/tokens",
            &json!({"name": "assistant", "scopes": ["read"], "services": ["checkout"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let token = token["secret"].as_str().unwrap().to_owned();

    let url = serve(&app).await;
    let client = connect(&url, &token).await.expect("the SDK client connects");
    let tools: Vec<String> =
        client.list_all_tools().await.unwrap().iter().map(|t| t.name.to_string()).collect();
    for name in [
        "list_incidents",
        "get_incident",
        "list_findings",
        "get_finding",
        "get_trace",
        "commit_impact",
        "draft_rollback",
        "search_traces",
        "list_deploys",
        "dora_metrics",
    ] {
        assert!(tools.iter().any(|t| t == name), "{name} missing from {tools:?}");
    }

    let listed = call(&client, "list_findings", json!({"verdict": "regressed"})).await;
    let findings =
        listed.structured_content.as_ref().unwrap()["findings"].as_array().unwrap().clone();
    assert_eq!(
        findings.iter().map(|f| f["id"].as_u64().unwrap()).collect::<Vec<_>>(),
        [ours],
        "only checkout's"
    );

    let mine = call(&client, "get_finding", json!({"id": ours})).await;
    assert_ne!(mine.is_error, Some(true));
    assert_eq!(mine.structured_content.as_ref().unwrap()["service"], "checkout");
    let refused = call(&client, "get_finding", json!({"id": theirs})).await;
    assert_eq!(refused.is_error, Some(true), "another team's finding");
    assert!(text(&refused).contains(&format!("no finding {theirs}")), "{}", text(&refused));
    assert!(refused.structured_content.is_none());
    let refused = call(&client, "draft_rollback", json!({"finding_id": theirs})).await;
    assert_eq!(refused.is_error, Some(true));
    let rollback = call(&client, "draft_rollback", json!({"finding_id": ours})).await;
    let rollback = rollback.structured_content.unwrap();
    assert_eq!(rollback["rollback"]["previous_version"], "1.9.0", "{rollback}");

    let trace = call(&client, "get_trace", json!({"trace_id": TRACE})).await;
    let spans = trace.structured_content.as_ref().unwrap()["spans"].as_array().unwrap().clone();
    assert_eq!(spans.len(), 2);
    let stub = spans.iter().find(|s| s["redacted"] == true).expect("search's span is a stub");
    assert!(
        stub.get("name").is_none()
            && !serde_json::to_string(&spans).unwrap().contains("SELECT secret"),
        "{spans:?}"
    );
    let bad = call(&client, "get_trace", json!({"trace_id": "nope"})).await;
    assert!(bad.is_error == Some(true) && text(&bad).contains("32 hex digits"));
    let searched = call(
        &client,
        "search_traces",
        json!({"service": "search", "start": "2025-12-31T00:00:00Z"}),
    )
    .await;
    assert_eq!(
        searched.structured_content.unwrap()["traces"],
        json!([]),
        "search's spans are out of scope"
    );
    let own = call(
        &client,
        "search_traces",
        json!({"service": "checkout", "start": "2025-12-31T00:00:00Z"}),
    )
    .await;
    assert_eq!(own.structured_content.unwrap()["traces"].as_array().map(Vec::len), Some(1));
    let dora = call(&client, "dora_metrics", json!({"window": "7d"})).await;
    assert_eq!(dora.structured_content.unwrap()["services"], json!(["checkout"]));
    client.cancel().await.unwrap();

    // A bad token cannot even connect.
    assert!(connect(&url, "sbt_00000000_nope").await.is_err());

    // Each call is in the audit log as the token, with its tool and arguments.
    let (_, audit) = app.get("/api/v1/audit?limit=1000").await;
    let records = audit["records"].as_array().unwrap_or_else(|| panic!("{audit}"));
    let mcp: Vec<&Value> =
        records.iter().filter(|r| r["action"].as_str().unwrap_or("").starts_with("mcp.")).collect();
    assert!(
        mcp.iter().any(|r| r["action"] == "mcp.get_finding"
            && r["outcome"] == "not found"
            && r["resource"].as_str().unwrap().contains(&theirs.to_string())),
        "{mcp:?}"
    );
    assert!(
        mcp.iter().all(|r| r["principal"].as_str().unwrap().contains("assistant")
            || r["principal"].as_str().unwrap().starts_with("token")),
        "{mcp:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_assistant_flags_a_review_within_its_reach_once_with_the_notifiers_comment() {
    let (recorder, base) = Recorder::start(0).await;
    let (mut changes, _, repositories) = forges(&base);
    changes.services = ["checkout", "search"]
        .map(|service| ServiceOwnership { service: service.into(), ..ServiceOwnership::default() })
        .to_vec();
    // Gitea comments on findings by itself too: a flag and the notifier share one comment.
    let notifications = NotifySettings {
        forges: vec![ForgeNotify {
            integration: "gitea-main".into(),
            comments: true,
            statuses: false,
            gate: false,
        }],
        repositories,
        ..NotifySettings::default()
    };
    let app = TestApp::with_full_settings(settings_with(changes, notifications));
    let (deploy, ours) = regression(&app, "checkout", "shop-gitea", Some(("gitea", "42")));
    let (_, theirs) = regression(&app, "search", "shop-gitea", Some(("gitea", "43")));
    let token = |scopes: Value| {
        let app = &app;
        async move {
            let body = json!({"name": "assistant", "scopes": scopes, "services": ["checkout"]});
            let (status, token) = app.post_json("/api/v1/tokens", &body).await;
            assert_eq!(status, StatusCode::CREATED, "{token}");
            token["secret"].as_str().unwrap().to_owned()
        }
    };
    let url = serve(&app).await;

    // Reading is not acting: a `read` token is refused, and says what it needs.
    let reader = connect(&url, &token(json!(["read"])).await).await.unwrap();
    let refused = call(&reader, "flag_review", json!({"finding_id": ours})).await;
    assert_eq!(refused.is_error, Some(true));
    assert!(text(&refused).contains("`admin` scope"), "{}", text(&refused));
    reader.cancel().await.unwrap();

    let assistant = connect(&url, &token(json!(["admin"])).await).await.unwrap();
    let tools = assistant.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "flag_review"), "{tools:?}");
    // Another service's suspect: as if it did not exist.
    let other = call(&assistant, "flag_review", json!({"finding_id": theirs})).await;
    assert!(other.is_error == Some(true) && text(&other).contains(&format!("no finding {theirs}")));
    let wrong =
        call(&assistant, "flag_review", json!({"finding_id": ours, "commit": "abcdef1"})).await;
    assert!(
        wrong.is_error == Some(true) && text(&wrong).contains("is not a suspect"),
        "{}",
        text(&wrong)
    );

    let flagged = call(&assistant, "flag_review", json!({"finding_id": ours})).await;
    let flagged =
        flagged.structured_content.clone().unwrap_or_else(|| panic!("{}", text(&flagged)));
    assert_eq!(flagged["status"], "queued", "{flagged}");
    assert_eq!(flagged["target"], "PR #42", "{flagged}");
    let again = call(&assistant, "flag_review", json!({"finding_id": ours})).await;
    assert_eq!(again.structured_content.unwrap()["status"], "already flagged");
    // Proposing a revert is another right: `admin` does not imply it.
    let refused = call(&assistant, "propose_revert", json!({"finding_id": ours})).await;
    assert!(refused.is_error == Some(true) && text(&refused).contains("`revert` scope"));
    assistant.cancel().await.unwrap();

    // A `revert` token of checkout: search's suspect does not exist for it; checkout's gets
    // past the check and is refused for what it is (this repository has no mirror to make it).
    let reverter = connect(&url, &token(json!(["read", "revert"])).await).await.unwrap();
    let other = call(&reverter, "propose_revert", json!({"finding_id": theirs})).await;
    assert!(other.is_error == Some(true) && text(&other).contains(&format!("no finding {theirs}")));
    let gitea = call(&reverter, "propose_revert", json!({"finding_id": ours})).await;
    assert!(
        gitea.is_error == Some(true) && text(&gitea).contains("`shop-gitea` has no mirror yet"),
        "{}",
        text(&gitea)
    );
    reverter.cancel().await.unwrap();

    // The notifier decides the same comment: nothing new. One comment reaches the review.
    server::announce_deploy(&app.state, deploy).unwrap();
    server::deliver_due(&app.state).await.unwrap();
    let sent = recorder.take();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].path.ends_with("/repos/acme/shop/issues/42/comments"), "{}", sent[0].path);
    assert!(
        sent[0].json()["body"].as_str().unwrap().contains(&format!("/findings/{ours}")),
        "{}",
        sent[0].json()
    );

    // Every call is audited, refusals included.
    let (_, audit) = app.get("/api/v1/audit?limit=1000").await;
    let reverts = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "mcp.propose_revert")
        .count();
    assert_eq!(reverts, 3, "{audit}");
    let outcomes: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "mcp.flag_review")
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.len(), 5, "{outcomes:?}");
    for outcome in ["denied", "not found", "invalid", "ok"] {
        assert!(outcomes.contains(&outcome), "{outcome}: {outcomes:?}");
    }
}
