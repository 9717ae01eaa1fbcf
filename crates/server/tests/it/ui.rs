//! The web UI in-process: every page answers 200 with well-formed HTML (checked as XML, so
//! every tag is closed and every entity escaped) for someone who may read, 404 as a page for
//! unknown ids, and says how to send data when there is none. Pages carry no inline script or
//! style (the CSP forbids both). The browser walk through the demo is in
//! `crates/spanblame/tests/it/browser.rs`.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{SECOND, T0, TestApp};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// GETs `path` and returns the status, the body and the content type.
async fn page(app: &TestApp, path: &str) -> (StatusCode, String, String) {
    app.get_page(path).await
}

/// Well-formed, titled, one `h1`, unique ids, no inline script or style.
fn assert_valid_page(path: &str, html: &str) {
    assert!(html.starts_with("<!DOCTYPE html>"), "{path}: no doctype");
    let options = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let document = roxmltree::Document::parse_with_options(html, options)
        .unwrap_or_else(|e| panic!("{path} is not well-formed: {e}\n{html}"));
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "html");
    assert_eq!(root.attribute("lang"), Some("en"), "{path}");
    let count = |name: &str| root.descendants().filter(|n| n.tag_name().name() == name).count();
    let head = root.children().find(|n| n.tag_name().name() == "head").expect("a <head>");
    assert_eq!(head.children().filter(|n| n.tag_name().name() == "title").count(), 1, "{path}");
    assert_eq!(count("h1"), 1, "{path}: one <h1>");
    let mut ids = BTreeSet::new();
    for node in root.descendants() {
        if let Some(id) = node.attribute("id") {
            assert!(ids.insert(id.to_owned()), "{path}: duplicate id `{id}`");
        }
        assert!(
            node.attribute("style").is_none(),
            "{path}: inline style on <{}>",
            node.tag_name().name()
        );
        if node.tag_name().name() == "script" {
            assert!(node.attribute("src").is_some(), "{path}: inline script");
        }
    }
}

#[tokio::test]
async fn an_empty_server_says_how_to_send_data_and_unknown_ids_are_404_pages() {
    let app = TestApp::new();
    for (path, hint) in [
        ("/", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ("/traces", "No spans have arrived yet"),
        ("/findings", "spanblame deploy"),
        ("/deploys", "spanblame deploy --service"),
        ("/dora", "No deploys in this window"),
    ] {
        let (status, html, content_type) = page(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
        assert!(content_type.starts_with("text/html"), "{path}: {content_type}");
        assert_valid_page(path, &html);
        assert!(html.contains(hint), "{path} should say `{hint}`: {html}");
    }
    for path in [
        format!("/traces/{TRACE}"),
        "/traces/not-a-trace".into(),
        "/findings/1".into(),
        "/findings/abc".into(),
        "/incidents/1".into(),
        "/incidents/abc".into(),
        "/deploys/1".into(),
        format!("/commits/{SHA}"),
        "/commits/xyz".into(),
        "/services/checkout".into(),
    ] {
        let (status, html, _) = page(&app, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {html}");
        assert_valid_page(&path, &html);
        assert!(html.contains("404 Not Found"), "{path}: {html}");
    }
}

#[tokio::test]
async fn every_page_renders_stored_data() {
    let app = TestApp::new();
    let start = T0 - 600 * SECOND;
    app.export_span(
        TRACE,
        &[
            ("service.name", "checkout"),
            ("service.version", "1.2.0"),
            ("deployment.environment.name", "production"),
            ("vcs.ref.head.revision", SHA),
            ("customer.tier", "gold & <silver>"),
        ],
        start,
    )
    .await;
    let (status, deploy) = app
        .post_json(
            "/api/v1/deploys",
            &json!({"service": "checkout", "environment": "production", "version": "1.2.0", "commit": SHA, "started_at": "2025-12-31T23:50:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{deploy}");
    let deploy_id = deploy["id"].as_u64().unwrap();

    let (trace_path, deploy_path) = (format!("/traces/{TRACE}"), format!("/deploys/{deploy_id}"));
    let compare_path = format!("/compare?a={TRACE}&b={TRACE}");
    let pages = [
        ("/", "/", vec!["checkout", "1.2.0 in production"]),
        ("/traces", "/traces?service=checkout&last=24h&attributes=", vec![TRACE, "GET /checkout"]),
        (
            "/traces/{trace_id}",
            &trace_path,
            vec!["GET /checkout", "1.2.0", "gold &#38; &#60;silver&#62;"],
        ),
        (
            "/services/{service}",
            "/services/checkout?hours=24&environment=production",
            vec!["<svg", "GET /checkout", "1.2.0"],
        ),
        ("/compare", &compare_path, vec!["Compare two traces", "GET /checkout", "checkout 1.2.0"]),
        ("/findings", "/findings?status=open", vec!["No findings match"]),
        ("/deploys", "/deploys?service=checkout", vec!["1.2.0", &deploy_path]),
        ("/deploys/{id}", &deploy_path, vec!["Deploy of checkout 1.2.0 to production"]),
        (
            "/dora",
            "/dora?service=checkout&window=7d",
            vec!["Service checkout", "1 deploy;", "Lead time"],
        ),
        // Span metrics are off here: the page says how to turn them on (see span_metrics.rs).
        ("/services/graph", "/services/graph", vec!["The service graph is off"]),
    ];
    let mut seen = BTreeSet::new();
    for (route, path, expected) in &pages {
        let (status, html, _) = page(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
        assert_valid_page(path, &html);
        for text in expected {
            assert!(html.contains(text), "{path} should show `{text}`: {html}");
        }
        seen.insert(route.to_string());
    }
    // A finding, an incident and a commit need detection and a forge: they render for real
    // in the browser walk through the demo; here, their 404s above.
    seen.insert("/findings/{id}".into());
    seen.insert("/incidents/{id}".into());
    seen.insert("/commits/{sha}".into());
    let page_routes: BTreeSet<String> =
        server::route_table().iter().filter(|r| r.page).map(|r| r.path.to_owned()).collect();
    assert_eq!(seen, page_routes, "every page route is visited");

    // Bad input is a page saying what to fix.
    let (status, html, _) = page(&app, "/traces?min_duration_ms=fast").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_valid_page("search", &html);
    assert!(html.contains("`min_duration_ms` must be a number of milliseconds"), "{html}");
    for (path, message) in [
        (format!("/compare?a={TRACE}"), "`b` is missing: compare takes two trace ids"),
        (format!("/compare?a=nope&b={TRACE}"), "`a` = `nope` is not a trace id"),
    ] {
        let (status, html, _) = page(&app, &path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {html}");
        assert!(html.contains(message), "{path}: {html}");
    }
    let (status, html, _) = page(&app, "/services/checkout?hours=5").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("not one of 1, 3, 6, 24"), "{html}");

    // The script and styles come from this server.
    let (status, css, content_type) = page(&app, "/assets/app.css").await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "text/css; charset=utf-8"));
    assert!(css.contains("ol.waterfall"));
    let (status, _, content_type) = page(&app, "/assets/app.js").await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "text/javascript; charset=utf-8"));
}

#[tokio::test]
async fn sampled_spans_count_as_the_spans_they_stand_for_and_say_so() {
    // 100 spans kept by a 25% head sampler (`ot=th:c`): the service stands for about 400.
    let app = TestApp::new();
    let start = T0 - 300 * SECOND;
    let spans: Vec<serde_json::Value> = (0..100u64)
        .map(|i| {
            let t = start + i * SECOND;
            json!({
                "traceId": format!("{:032x}", i + 1), "spanId": format!("{:016x}", i + 1),
                "traceState": "ot=th:c", "name": "GET /checkout", "kind": 2,
                "startTimeUnixNano": t.to_string(), "endTimeUnixNano": (t + 5_000_000).to_string(),
            })
        })
        .collect();
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
        "scopeSpans": [{"spans": spans}],
    }]});
    let (status, response) = app.post_json("/v1/traces", &body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    let (status, html, _) = page(&app, "/services/checkout?hours=24").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_valid_page("service", &html);
    assert!(html.contains("over ≈400 spans (estimated"), "{html}");
    assert!(html.contains(">≈400</td>"), "the operation's count: {html}");
}
