//! Span metrics and the service graph: a client span and its server child, exported apart,
//! become an edge on `/metrics/spans` (under Tempo's metric names) and on the graph page,
//! marked when a service on it has an open incident; `promtool check metrics` accepts both
//! `/metrics` and `/metrics/spans`; with span metrics off, both say how to turn them on.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::{SECOND, T0, TestApp, promtool_accepts};

const TRACE: &str = "7bf92f3577b34da6a3ce929d0e0e4736";

fn export(service: &str, span_id: &str, parent: &str, kind: u8, ms: u64, error: bool) -> Value {
    let start = T0 - 30 * SECOND;
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"spans": [{
            "traceId": TRACE, "spanId": span_id, "parentSpanId": parent,
            "name": format!("{service} call"), "kind": kind,
            "startTimeUnixNano": start.to_string(),
            "endTimeUnixNano": (start + ms * 1_000_000).to_string(),
            "status": {"code": if error { 2 } else { 0 }},
        }]}],
    }]})
}

fn with_span_metrics() -> TestApp {
    let mut settings = TestApp::default_settings();
    settings.span_metrics = Some(analysis::span_metrics::Settings::default());
    TestApp::with_full_settings(settings)
}

#[tokio::test]
async fn an_edge_reaches_metrics_spans_and_the_graph_page() {
    let app = with_span_metrics();
    for body in [
        export("frontend", "00f067aa0ba902b7", "", 3, 120, false),
        export("checkout", "00f067aa0ba902b8", "00f067aa0ba902b7", 2, 100, true),
    ] {
        let (status, answer) = app.post_json("/v1/traces", &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let (status, text, content_type) = app.get_page("/metrics/spans").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    for expected in [
        "traces_service_graph_request_total{client=\"frontend\",server=\"checkout\",connection_type=\"\"} 1",
        "traces_service_graph_request_failed_total{client=\"frontend\",server=\"checkout\",connection_type=\"\"} 1",
        "traces_spanmetrics_calls_total{service=\"checkout\",span_name=\"checkout call\",span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_ERROR\"} 1",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
    promtool_accepts("/metrics/spans", &text);
    // Jaeger's dependency links are the same edges.
    let (_, links) = app.get("/jaeger/api/dependencies").await;
    assert_eq!(links["data"], json!([{"parent": "frontend", "child": "checkout", "callCount": 1}]));
    let (_, metrics, _) = app.get_page("/metrics").await;
    promtool_accepts("/metrics", &metrics);
    // Requests are counted by route template, with the time they took.
    for series in [
        "spanblame_http_requests_total{method=\"POST\",route=\"/v1/traces\",status=\"200\"} 2",
        "spanblame_http_requests_total{method=\"GET\",route=\"/metrics/spans\",status=\"200\"} 1",
        "spanblame_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/traces\",status=\"200\"} 2",
    ] {
        assert!(metrics.contains(series), "{series}\n{metrics}");
    }

    let (status, page, _) = app.get_page("/services/graph").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("frontend") && page.contains("checkout"), "{page}");
    assert!(page.contains("100% err"), "{page}");
    assert!(!page.contains("class=\"edge incident\""), "{page}");
    // An open incident on checkout marks its edge and its box.
    let deploy = app.record_deploy("checkout", "2.0", None, T0 - 3600 * SECOND);
    app.record_regression(deploy.id, T0 - 1800 * SECOND, &json!({}));
    let (_, page, _) = app.get_page("/services/graph").await;
    assert!(
        page.contains("class=\"edge incident\"") && page.contains("class=\"node incident\""),
        "{page}"
    );
    assert!(page.contains(&format!("href=\"/incidents/{}\"", deploy.id)), "{page}");
}

#[tokio::test]
async fn span_metrics_off_say_how_to_turn_them_on() {
    let app = TestApp::new();
    let (status, answer) = app.get("/metrics/spans").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(answer["error"]["message"].as_str().unwrap().contains("[span_metrics] enabled = true"));
    let (status, page, _) = app.get_page("/services/graph").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("The service graph is off"), "{page}");
}
