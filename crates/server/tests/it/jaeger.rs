//! Jaeger's query API under `/jaeger`, in the JSON model Jaeger's UI reads (its "APIs"
//! documentation: `{"data", "total", "limit", "offset", "errors"}`; traces with `spans` and
//! `processes`; tags typed `string`/`bool`/`int64`/`float64`; times in microseconds), over the
//! same export the Tempo tests use.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::{SECOND, T0};
use crate::tempo::{TRACE, stored_app};

fn tag<'a>(tags: &'a Value, key: &str) -> Option<&'a Value> {
    tags.as_array().unwrap().iter().find(|t| t["key"] == key)
}

#[tokio::test]
async fn services_operations_and_a_trace_in_jaegers_model() {
    let app = stored_app().await;
    let (status, services) = app.get("/jaeger/api/services").await;
    assert_eq!(status, StatusCode::OK, "{services}");
    assert_eq!(
        services,
        json!({"data": ["checkout", "frontend"], "total": 2, "limit": 0, "offset": 0, "errors": null})
    );
    let (_, operations) = app.get("/jaeger/api/services/frontend/operations").await;
    assert_eq!(operations["data"], json!(["/cart", "render"]), "{operations}");
    let (_, operations) = app.get("/jaeger/api/operations?service=checkout&spanKind=client").await;
    assert_eq!(operations["data"], json!([{"name": "SELECT promotions", "spanKind": "client"}]));
    let (status, refused) = app.get("/jaeger/api/operations").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(refused["errors"][0]["code"], 400, "{refused}");

    let (status, found) = app.get(&format!("/jaeger/api/traces/{TRACE}")).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["total"], 1);
    let trace = &found["data"][0];
    assert_eq!(trace["traceID"], TRACE);
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 4);
    let root = spans.iter().find(|s| s["spanID"] == "00f067aa0ba902b7").unwrap();
    let start_us = (T0 - 60 * SECOND) / 1000;
    assert_eq!(root["operationName"], "POST /cart");
    assert_eq!(root["startTime"], start_us);
    assert_eq!(root["duration"], 900_000);
    assert_eq!(root["flags"], 1);
    assert_eq!(
        root["references"],
        json!([{"refType": "FOLLOWS_FROM", "traceID": "5bf92f3577b34da6a3ce929d0e0e4736", "spanID": "10f067aa0ba902b9"}])
    );
    let tags = &root["tags"];
    assert_eq!(
        tag(tags, "http.status_code"),
        Some(&json!({"key": "http.status_code", "type": "int64", "value": 500}))
    );
    assert_eq!(tag(tags, "ratio").unwrap()["type"], "float64");
    assert_eq!(tag(tags, "cached").unwrap()["value"], false);
    assert_eq!(tag(tags, "error").unwrap()["value"], true);
    assert_eq!(tag(tags, "span.kind").unwrap()["value"], "server");
    assert_eq!(tag(tags, "otel.status_description").unwrap()["value"], "upstream timed out");
    assert_eq!(tag(tags, "otel.scope.name").unwrap()["value"], "io.opentelemetry.http");
    assert_eq!(root["logs"][0]["timestamp"], start_us + 10_000);
    assert_eq!(
        root["logs"][0]["fields"][0],
        json!({"key": "event", "type": "string", "value": "exception"})
    );
    let child = spans.iter().find(|s| s["spanID"] == "00f067aa0ba902c1").unwrap();
    assert_eq!(
        child["references"],
        json!([{"refType": "CHILD_OF", "traceID": TRACE, "spanID": "00f067aa0ba902b7"}])
    );
    // Processes: one per resource, its attributes but the service name as tags.
    let process = &trace["processes"][root["processID"].as_str().unwrap()];
    assert_eq!(process["serviceName"], "frontend");
    assert_eq!(
        process["tags"],
        json!([{"key": "service.version", "type": "string", "value": "2.0.0"}])
    );
    assert_eq!(trace["processes"][child["processID"].as_str().unwrap()]["serviceName"], "checkout");

    // Span metrics are off here: no dependency links, and no error.
    let (status, links) =
        app.get("/jaeger/api/dependencies?endTs=1767225600000&lookback=3600000").await;
    assert_eq!((status, links["data"].clone()), (StatusCode::OK, json!([])));

    let (status, missing) = app.get("/jaeger/api/traces/5bf92f3577b34da6a3ce929d0e0e4736").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["errors"][0]["msg"], "trace not found");
}

#[tokio::test]
async fn trace_search_takes_jaegers_parameters() {
    let app = stored_app().await;
    let window = format!("start={}&end={}", (T0 - 120 * SECOND) / 1000, T0 / 1000);
    let ids = |found: &Value| -> Vec<String> {
        found["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["traceID"].as_str().unwrap().to_owned())
            .collect()
    };
    for query in [
        "service=checkout",
        "service=frontend&operation=%2Fcart",
        "service=frontend&operation=render",
        "service=checkout&minDuration=500ms",
        "service=checkout&tags=%7B%22db.system%22%3A%22postgresql%22%7D",
        "service=checkout&tags=error%3Dtrue",
        "service=checkout&tags=span.kind%3Dclient&maxDuration=1s",
        "service=frontend&tags=http.status_code%3D500",
    ] {
        let (status, found) = app.get(&format!("/jaeger/api/traces?{query}&{window}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {found}");
        assert_eq!(ids(&found), [TRACE], "{query}");
        // Whole traces, not only the matching spans.
        assert_eq!(found["data"][0]["spans"].as_array().unwrap().len(), 4, "{query}");
    }
    for query in [
        "service=payments",
        "service=frontend&operation=POST%20%2Fcart",
        "service=checkout&minDuration=1s",
        "service=checkout&tags=%7B%22db.system%22%3A%22mysql%22%7D",
        "service=frontend&tags=span.kind%3Dclient",
    ] {
        let (_, found) = app.get(&format!("/jaeger/api/traces?{query}&{window}")).await;
        assert_eq!(found["data"], json!([]), "{query}");
    }
    // The default lookback is the last hour before now; the export is a minute before T0.
    let (_, found) = app.get("/jaeger/api/traces?service=checkout&lookback=2h").await;
    assert!(found["data"].is_array(), "{found}");

    for (query, words) in [
        ("operation=x", "`service` is required"),
        ("service=checkout&limit=0", "`limit` must be"),
        ("service=checkout&minDuration=soon", "`minDuration` must be a duration"),
        ("service=checkout&start=yesterday", "Unix microseconds"),
        ("service=checkout&lookback=often", "`lookback`"),
        ("service=checkout&tags=%7Bbroken", "JSON object"),
        ("service=checkout&tags=span.kind%3Dsideways", "span.kind"),
    ] {
        let (status, refused) = app.get(&format!("/jaeger/api/traces?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {refused}");
        let message = refused["errors"][0]["msg"].as_str().unwrap();
        assert!(message.contains(words), "{query}: {message}");
    }
}
