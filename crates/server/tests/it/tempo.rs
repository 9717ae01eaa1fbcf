//! Grafana Tempo's query API: OTLP in over `/v1/traces` comes back equal from
//! `/api/traces/{id}` and `/api/v2/traces/{id}` (JSON and protobuf); search answers in Tempo's
//! shapes for TraceQL and the older tags; bad queries are refused with where and why; tag
//! names and values come from the stored spans. Shapes follow Grafana's "Tempo HTTP API"
//! documentation (`traceID`, `rootServiceName`, `startTimeUnixNano` as a string, …).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::support::{SECOND, T0, TestApp};

pub(crate) const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// `start`/`end` around T0, in Unix seconds, as Grafana sends them.
const WINDOW: &str = "start=1767225000&end=1767226000";

pub(crate) fn at(offset_ms: u64) -> String {
    (T0 - 60 * SECOND + offset_ms * 1_000_000).to_string()
}

/// An export as an SDK sends it: two resources, two scopes, attributes of every type,
/// events, links, status, trace state and flags.
pub(crate) fn export_body() -> Value {
    let attrs = json!([
        {"key": "http.route", "value": {"stringValue": "/cart"}},
        {"key": "http.status_code", "value": {"intValue": "500"}},
        {"key": "ratio", "value": {"doubleValue": 0.25}},
        {"key": "cached", "value": {"boolValue": false}},
        {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "2"}]}}},
        {"key": "nested", "value": {"kvlistValue": {"values": [{"key": "k", "value": {"stringValue": "v"}}]}}},
        {"key": "raw", "value": {"bytesValue": "AQID"}},
    ]);
    json!({"resourceSpans": [
        {
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "frontend"}},
                {"key": "service.version", "value": {"stringValue": "2.0.0"}},
            ]},
            "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",
            "scopeSpans": [
                {
                    "scope": {"name": "io.opentelemetry.http", "version": "1.2.3"},
                    "spans": [{
                        "traceId": TRACE, "spanId": "00f067aa0ba902b7", "parentSpanId": "",
                        "traceState": "ot=th:c", "flags": 257,
                        "name": "POST /cart", "kind": 2,
                        "startTimeUnixNano": at(0), "endTimeUnixNano": at(900),
                        "attributes": attrs,
                        "events": [{"timeUnixNano": at(10), "name": "exception", "attributes": [
                            {"key": "exception.type", "value": {"stringValue": "Timeout"}}]}],
                        "links": [{"traceId": "5bf92f3577b34da6a3ce929d0e0e4736", "spanId": "10f067aa0ba902b9",
                                   "attributes": [{"key": "link.kind", "value": {"stringValue": "follows"}}]}],
                        "status": {"code": 2, "message": "upstream timed out"},
                    }],
                },
                {
                    "scope": {"name": "manual"},
                    "spans": [{
                        "traceId": TRACE, "spanId": "00f067aa0ba902b8", "parentSpanId": "00f067aa0ba902b7",
                        "name": "render", "kind": 1,
                        "startTimeUnixNano": at(20), "endTimeUnixNano": at(60),
                        "status": {},
                    }],
                },
            ],
        },
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
            "scopeSpans": [{
                "scope": {"name": "io.opentelemetry.jdbc"},
                "spans": [
                    {
                        "traceId": TRACE, "spanId": "00f067aa0ba902c1", "parentSpanId": "00f067aa0ba902b7",
                        "name": "apply_promotions", "kind": 1,
                        "startTimeUnixNano": at(100), "endTimeUnixNano": at(700),
                        "attributes": [{"key": "promo.count", "value": {"intValue": "3"}}],
                        "status": {"code": 2},
                    },
                    {
                        "traceId": TRACE, "spanId": "00f067aa0ba902c2", "parentSpanId": "00f067aa0ba902c1",
                        "name": "SELECT promotions", "kind": 3,
                        "startTimeUnixNano": at(150), "endTimeUnixNano": at(550),
                        "attributes": [{"key": "db.system", "value": {"stringValue": "postgresql"}}],
                        "status": {"code": 1},
                    },
                ],
            }],
        },
    ]})
}

pub(crate) async fn stored_app() -> TestApp {
    let app = TestApp::new();
    let (status, answer) = app.post_json("/v1/traces", &export_body()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    app
}

/// The resource spans of an OTLP export, decoded: what came in, in the wire's own terms.
fn decoded(json: &Value) -> otlp::ExportTraceServiceRequest {
    otlp::decode_json(json.to_string().as_bytes()).unwrap()
}

#[tokio::test]
async fn otlp_in_comes_back_equal_from_tempos_trace_by_id() {
    let app = stored_app().await;
    let sent = decoded(&export_body());

    let (status, v1) = app.get(&format!("/api/traces/{TRACE}?{WINDOW}")).await;
    assert_eq!(status, StatusCode::OK, "{v1}");
    assert_eq!(decoded(&json!({"resourceSpans": v1["batches"]})), sent, "{v1:#}");
    // OTLP/JSON's own forms: hex ids, 64-bit times as strings, lowerCamelCase names.
    let span = &v1["batches"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(span["traceId"], TRACE);
    assert_eq!(span["startTimeUnixNano"], at(0));

    let (status, v2) = app.get(&format!("/api/v2/traces/{TRACE}")).await;
    assert_eq!(status, StatusCode::OK, "{v2}");
    assert_eq!(decoded(&json!({"resourceSpans": v2["trace"]["resourceSpans"]})), sent);

    // Protobuf on request: v1 is the trace itself, v2 the trace in field 1 of its response.
    let (status, content_type, body) =
        app.get_bytes(&format!("/api/traces/{TRACE}"), "application/protobuf").await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "application/protobuf"));
    assert_eq!(otlp::decode_protobuf(&body).unwrap(), sent);
    let (_, _, body) =
        app.get_bytes(&format!("/api/v2/traces/{TRACE}"), "application/protobuf").await;
    assert_eq!(body[0], 0x0a, "field 1, length-delimited");
    let (mut len, mut shift, mut at_byte) = (0usize, 0, 1);
    loop {
        let byte = body[at_byte];
        len |= usize::from(byte & 0x7f) << shift;
        shift += 7;
        at_byte += 1;
        if byte & 0x80 == 0 {
            break;
        }
    }
    assert_eq!(at_byte + len, body.len());
    assert_eq!(otlp::decode_protobuf(&body[at_byte..]).unwrap(), sent);

    // An unknown trace, a malformed id or time: Tempo's status codes, with a message.
    let (status, answer) = app.get("/api/traces/5bf92f3577b34da6a3ce929d0e0e4736").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (status, answer) = app.get("/api/traces/not-a-trace").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"]["message"].as_str().unwrap().contains("32 hex digits"), "{answer}");
    let (status, answer) = app.get(&format!("/api/traces/{TRACE}?start=yesterday")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"]["message"].as_str().unwrap().contains("Unix seconds"), "{answer}");

    let (status, content_type, body) = app.get_bytes("/api/echo", "*/*").await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"echo"[..]), "{content_type}");
}

fn search_path(q: &str, extra: &str) -> String {
    let q: String = q
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("/api/search?q={q}&{WINDOW}{extra}")
}

#[tokio::test]
async fn search_answers_traceql_in_tempos_shapes() {
    let app = stored_app().await;

    let (status, found) = app
        .get(&search_path("{ resource.service.name = \"checkout\" && duration > 500ms }", ""))
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let traces = found["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 1, "{found}");
    let hit = &traces[0];
    assert_eq!(hit["traceID"], TRACE);
    assert_eq!(hit["rootServiceName"], "frontend");
    assert_eq!(hit["rootTraceName"], "POST /cart");
    assert_eq!(hit["startTimeUnixNano"], at(0));
    assert_eq!(hit["durationMs"], 900);
    let set = &hit["spanSets"][0];
    assert_eq!(set["matched"], 1);
    assert_eq!(hit["spanSet"], *set);
    let span = &set["spans"][0];
    assert_eq!(span["spanID"], "00f067aa0ba902c1");
    assert_eq!(span["name"], "apply_promotions");
    assert_eq!(span["startTimeUnixNano"], at(100));
    assert_eq!(span["durationNanos"], "600000000");
    assert_eq!(
        span["attributes"],
        json!([{"key": "service.name", "value": {"stringValue": "checkout"}}])
    );
    assert!(found["metrics"]["inspectedTraces"].as_u64().unwrap() >= 1, "{found}");

    // Structure, aggregates, grouping and spans per spanset.
    let names = |found: &Value| -> Vec<Vec<String>> {
        found["traces"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["spanSets"].as_array().unwrap().clone())
            .map(|set| {
                set["spans"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .collect()
    };
    let (_, found) =
        app.get(&search_path("{ name = \"POST /cart\" } >> { kind = client }", "")).await;
    assert_eq!(names(&found), [["SELECT promotions"]]);
    let (_, found) = app.get(&search_path("{ status = error } | count() > 1", "")).await;
    assert_eq!(names(&found), [["apply_promotions", "POST /cart"]]);
    let (_, found) = app.get(&search_path("{ } | by(resource.service.name)", "&spss=1")).await;
    let sets = found["traces"][0]["spanSets"].as_array().unwrap();
    assert_eq!(sets.len(), 2, "{found}");
    assert_eq!(sets[0]["matched"], 2);
    assert_eq!(sets[0]["spans"].as_array().unwrap().len(), 1);
    assert_eq!(sets[0]["attributes"][0]["key"], "resource.service.name");
    let (_, found) =
        app.get(&search_path("{ .http.status_code = 500 && .cached = false }", "")).await;
    assert_eq!(names(&found), [["POST /cart"]]);
    let (_, found) =
        app.get(&search_path("{ name =~ \"SELECT.*\" } | select(span.db.system)", "")).await;
    assert_eq!(
        found["traces"][0]["spanSets"][0]["spans"][0]["attributes"],
        json!([{"key": "db.system", "value": {"stringValue": "postgresql"}}])
    );
    let (_, found) = app.get(&search_path("{ change.commit = \"0123456789\" }", "")).await;
    assert_eq!(found["traces"], json!([]));
    let (_, found) = app.get(&search_path("{ traceDuration > 1s }", "")).await;
    assert_eq!(found["traces"], json!([]));

    // The older search: logfmt tags and trace duration bounds.
    let (_, found) = app
        .get(&format!("/api/search?tags=service.name%3Dcheckout%20db.system%3Dpostgresql&{WINDOW}"))
        .await;
    assert_eq!(names(&found), [["SELECT promotions"]]);
    let (_, found) = app.get(&format!("/api/search?minDuration=1s&{WINDOW}")).await;
    assert_eq!(found["traces"], json!([]));
    let (_, found) =
        app.get(&format!("/api/search?minDuration=850ms&maxDuration=1.5s&limit=5&{WINDOW}")).await;
    assert_eq!(found["traces"].as_array().unwrap().len(), 1, "{found}");
    // Outside the window, nothing.
    let (_, found) = app.get("/api/search?q=%7B%7D&start=1767000000&end=1767100000").await;
    assert_eq!(found["traces"], json!([]));
}

#[tokio::test]
async fn bad_searches_are_refused_with_where_and_why() {
    let app = stored_app().await;
    for (path, words) in [
        (search_path("{ rate() }", ""), "metrics query"),
        (search_path("{ } | rate()", ""), "metrics query"),
        (search_path("{ .a + 1 = 2 }", ""), "arithmetic"),
        (search_path("{ foo = 1 }", ""), "unknown word `foo` at column 3"),
        (search_path("{ event.name = \"x\" }", ""), "`event` scope"),
        (search_path("{ name = \"x\"", ""), "column"),
        (search_path("{ }", "&limit=0"), "`limit` must be a number from 1 to 1000"),
        (format!("/api/search?minDuration=fast&{WINDOW}"), "`minDuration` must be a duration"),
        (format!("/api/search?q=%7B%7D&tags=a%3Db&{WINDOW}"), "not both"),
        (format!("/api/search?tags=broken&{WINDOW}"), "logfmt"),
        ("/api/search?start=1767226000&end=1767225000".to_owned(), "`start` must be before `end`"),
    ] {
        let (status, answer) = app.get(&path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_argument", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{path}: {message}");
    }
}

#[tokio::test]
async fn tags_and_their_values_come_from_the_stored_spans() {
    let app = stored_app().await;
    let (status, tags) = app.get(&format!("/api/search/tags?{WINDOW}")).await;
    assert_eq!(status, StatusCode::OK, "{tags}");
    let names: Vec<&str> =
        tags["tagNames"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    for expected in ["service.name", "service.version", "http.route", "db.system", "promo.count"] {
        assert!(names.contains(&expected), "{expected}: {tags}");
    }

    let (_, scopes) = app.get(&format!("/api/v2/search/tags?scope=resource&{WINDOW}")).await;
    assert_eq!(
        scopes,
        json!({"scopes": [{"name": "resource", "tags": ["service.name", "service.version"]}]})
    );
    let (_, scopes) = app.get(&format!("/api/v2/search/tags?{WINDOW}")).await;
    let listed: Vec<&str> =
        scopes["scopes"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(listed, ["intrinsic", "resource", "span"]);
    let (status, answer) = app.get("/api/v2/search/tags?scope=event").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    let (_, values) = app.get(&format!("/api/search/tag/service.name/values?{WINDOW}")).await;
    let mut services: Vec<&str> =
        values["tagValues"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    services.sort();
    assert_eq!(services, ["checkout", "frontend"]);
    let (_, values) =
        app.get(&format!("/api/v2/search/tag/span.promo.count/values?{WINDOW}")).await;
    assert_eq!(values, json!({"tagValues": [{"type": "int", "value": "3"}]}));
    let (_, values) = app.get(&format!("/api/v2/search/tag/status/values?{WINDOW}")).await;
    let statuses = values["tagValues"].as_array().unwrap();
    assert!(statuses.contains(&json!({"type": "keyword", "value": "error"})), "{values}");
    // `q` narrows the values to the spans it selects.
    let q = "q=%7B%20resource.service.name%20%3D%20%22checkout%22%20%7D";
    let (_, values) = app.get(&format!("/api/v2/search/tag/name/values?{q}&{WINDOW}")).await;
    assert_eq!(
        values,
        json!({"tagValues": [
            {"type": "string", "value": "apply_promotions"},
            {"type": "string", "value": "SELECT promotions"},
        ]})
    );
    let (status, answer) = app.get("/api/v2/search/tag/span.a%20%3D%201/values").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
}

/// Zipkin v2 JSON on the main address: accepted as Zipkin answers (202), readable through
/// every API; a malformed span rejected alone and counted; other encodings and oversized
/// bodies refused with what to do.
#[tokio::test]
async fn zipkin_spans_arrive_through_the_same_intake() {
    let app = TestApp::new();
    let start_us = (T0 - 60 * SECOND) / 1000;
    let body = json!([
        {"traceId": "5af7183fb1d4cf5f", "id": "352bff9a74ca9ad2", "name": "get /api",
         "timestamp": start_us, "duration": 1431, "kind": "SERVER",
         "localEndpoint": {"serviceName": "backend"},
         "tags": {"http.method": "GET", "service.version": "1.2.3", "error": "boom"}},
        {"traceId": "not a trace", "id": "352bff9a74ca9ad3", "timestamp": start_us}
    ]);
    let json_headers = [("content-type".to_owned(), "application/json".to_owned())];
    let (status, answer) =
        app.post_raw("/api/v2/spans", &json_headers, body.to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["rejected_spans"], 1);
    assert!(answer["message"].as_str().unwrap().contains("traceId"), "{answer}");

    let (status, trace) = app.get("/api/v1/traces/00000000000000005af7183fb1d4cf5f").await;
    assert_eq!(status, StatusCode::OK, "{trace}");
    let span = &trace["spans"][0];
    assert_eq!(
        (span["service"].as_str(), span["version"].as_str()),
        (Some("backend"), Some("1.2.3"))
    );
    assert_eq!(span["status"], json!({"code": "error", "message": "boom"}));
    let (_, jaeger) = app.get("/jaeger/api/traces/00000000000000005af7183fb1d4cf5f").await;
    assert_eq!(jaeger["data"][0]["spans"][0]["duration"], 1431);

    let (status, answer) = app
        .post_raw(
            "/api/v2/spans",
            &[("content-type".to_owned(), "application/x-protobuf".to_owned())],
            vec![0x0a],
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("JSON"), "{answer}");
    let (status, answer) =
        app.post_raw("/api/v2/spans", &json_headers, b"{\"a\": 1}".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("Zipkin v2 JSON"), "{answer}");
    let huge = vec![b' '; 17 * 1024 * 1024];
    let (status, _) = app.post_raw("/api/v2/spans", &json_headers, huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// The TraceQL conformance table (`crates/traceql/conformance.txt`) through a real store and
/// Tempo's search API: its trace exported over OTLP, the search asked with a `read` token that
/// may not see `payments`, and each row's spansets compared (but the `change.`/`deploy.` rows,
/// whose values come from a change graph this store has not got).
#[tokio::test]
async fn the_conformance_table_holds_through_the_store() {
    let app = TestApp::new();
    let base = T0 - 60 * SECOND;
    let span = |id: u8,
                parent: Option<u8>,
                name: &str,
                kind: u8,
                ms: u64,
                status: Value,
                attributes: Value| {
        let start = base + u64::from(id) * 1_000_000;
        json!({
            "traceId": "01".repeat(16), "spanId": format!("{id:02x}").repeat(8),
            "parentSpanId": parent.map(|p| format!("{p:02x}").repeat(8)).unwrap_or_default(),
            "name": name, "kind": kind,
            "startTimeUnixNano": start.to_string(), "endTimeUnixNano": (start + ms * 1_000_000).to_string(),
            "status": status, "attributes": attributes,
        })
    };
    let resource = |service: &str, spans: Vec<Value>| {
        json!({"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
               "scopeSpans": [{"spans": spans}]})
    };
    let body = json!({"resourceSpans": [
        resource("frontend", vec![span(1, None, "GET /cart", 2, 900, json!({}), json!([
            {"key": "http.method", "value": {"stringValue": "GET"}},
            {"key": "http.status_code", "value": {"intValue": "200"}},
        ]))]),
        resource("checkout", vec![
            span(2, Some(1), "apply_promotions", 1, 600, json!({"code": 2, "message": "promo service down"}), json!([
                {"key": "promo.count", "value": {"intValue": "3"}},
                {"key": "ratio", "value": {"doubleValue": 0.5}},
                {"key": "cached", "value": {"boolValue": false}},
            ])),
            span(3, Some(2), "SELECT promotions", 3, 400, json!({}), json!([
                {"key": "db.system", "value": {"stringValue": "postgresql"}},
            ])),
            span(4, Some(1), "load_cart", 1, 50, json!({"code": 1}), json!([])),
        ]),
        resource("payments", vec![span(5, Some(1), "charge", 3, 100, json!({"code": 2}), json!([]))]),
    ]});
    let (status, answer) = app.post_json("/v1/traces", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, token) = app
        .post_json(
            "/api/v1/tokens",
            &json!({"name": "grafana", "scopes": ["read"], "services": ["frontend", "checkout"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let token = token["secret"].as_str().unwrap().to_owned();

    let table = include_str!("../../../traceql/conformance.txt");
    let mut wrong = Vec::new();
    let mut ran = 0;
    for line in table.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (query, expected) = line.split_once('\t').unwrap();
        if query.contains("change.") || query.contains("deploy.") {
            continue;
        }
        let mut expected: Vec<Vec<&str>> = match expected {
            "-" => Vec::new(),
            sets => sets.split(" ;; ").map(|s| s.split(" | ").collect()).collect(),
        };
        let request = Request::get(search_path(query, "&spss=100&limit=5"))
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let (status, found) = app.send(request).await;
        assert_eq!(status, StatusCode::OK, "{query}: {found}");
        let mut got: Vec<Vec<&str>> = found["traces"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["spanSets"].as_array().unwrap())
            .map(|set| {
                set["spans"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["name"].as_str().unwrap())
                    .collect()
            })
            .collect();
        // Tempo lists a spanset's spans newest first, and `by()` groups in no set order.
        for set in got.iter_mut().chain(expected.iter_mut()) {
            set.sort_unstable();
        }
        got.sort();
        expected.sort();
        if got != expected {
            wrong.push(format!("{query}\n  expected {expected:?}\n  got      {got:?}"));
        }
        ran += 1;
    }
    assert!(ran >= 65, "only {ran} rows ran");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
