//! Bad input gets the documented status and a clear message, nothing is stored, and the
//! server keeps serving. Hand-written OTLP/JSON follows the spec's JSON mapping.

use std::io::Write;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use serde_json::json;

use crate::support::{TestServer, span_named};

const JSON_BODY: &str = r#"{"resourceSpans":[{
  "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}},
                            {"key":"deployment.environment","value":{"stringValue":"prod"}}]},
  "scopeSpans":[{"scope":{"name":"handmade"},"spans":[{
    "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
    "name":"POST /cart","kind":2,
    "startTimeUnixNano":"1763700000000000000","endTimeUnixNano":1763700000250000000,
    "attributes":[{"key":"retries","value":{"intValue":"3"}},
                  {"key":"blob","value":{"bytesValue":"AAEC"}},
                  {"key":"tags","value":{"arrayValue":{"values":[{"stringValue":"a"},{"doubleValue":1.5}]}}}],
    "events":[{"timeUnixNano":"1763700000100000000","name":"retry"}],
    "status":{"code":1}
  }]}]}]}"#;

fn post(
    server: &TestServer,
    content_type: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    let client = reqwest::blocking::Client::new();
    let mut request =
        client.post(server.url("/v1/traces")).header("content-type", content_type).body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.bytes().unwrap().to_vec())
}

fn json_error(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn hand_written_otlp_json_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let (status, content_type, body) = post(&server, "application/json", &[], JSON_BODY.into());
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(json_error(&body), json!({}), "no partialSuccess when everything was accepted");

    let trace = server.wait_for_trace("5b8efff798038103d269b633813fc60c", 1);
    let span = span_named(&trace, "POST /cart");
    assert_eq!(span["span_id"], "eee19b7ec3c1b174");
    assert_eq!(span["start_time"], "2025-11-21T04:40:00Z");
    assert_eq!(span["duration_ms"], 250.0);
    assert_eq!(span["status"]["code"], "ok");
    assert_eq!(span["attributes"], json!({"retries": 3, "blob": "AAEC", "tags": ["a", 1.5]}));
    assert_eq!(span["events"][0]["time"], "2025-11-21T04:40:00.1Z");
    assert_eq!(span["environment"], "prod", "the old `deployment.environment` name is read");

    // The same body gzip-compressed, to the main port this time.
    let (status, _, _) = post(
        &server,
        "application/json",
        &[("content-encoding", "gzip")],
        gzip(JSON_BODY.as_bytes()),
    );
    assert_eq!(status, 200);
}

#[test]
fn bad_bodies_get_documented_statuses_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(dir.path(), &[("SPANBLAME_INGEST_MAX_BODY", "64KiB")]);
    let valid =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::default();
    let _ = valid;
    let protobuf = {
        let request: ExportTraceServiceRequest = serde_json::from_str(JSON_BODY).unwrap();
        request.encode_to_vec()
    };

    // Truncated protobuf: 400 with a protobuf google.rpc.Status.
    let (status, content_type, body) =
        post(&server, "application/x-protobuf", &[], protobuf[..protobuf.len() - 9].to_vec());
    assert_eq!((status, content_type.as_str()), (400, "application/x-protobuf"));
    assert!(String::from_utf8_lossy(&body).contains("not a valid OTLP protobuf"), "{body:?}");

    // Wrong content type: 415.
    let (status, _, body) = post(&server, "text/plain", &[], b"hello".to_vec());
    assert_eq!(status, 415);
    assert_eq!(json_error(&body)["error"]["code"], "unsupported_media_type");

    // Invalid JSON: 400 naming the problem.
    let (status, _, body) =
        post(&server, "application/json", &[], b"{\"resourceSpans\": [".to_vec());
    assert_eq!(status, 400);
    let error = json_error(&body);
    assert_eq!(error["error"]["code"], "invalid_argument");
    assert_eq!(error["code"], 3, "OTLP's google.rpc.Status code INVALID_ARGUMENT");
    assert!(error["message"].as_str().unwrap().contains("not valid OTLP JSON"), "{error}");

    // Oversized body: 413.
    let (status, _, body) = post(&server, "application/x-protobuf", &[], vec![0u8; 100 * 1024]);
    assert_eq!(status, 413);
    assert!(String::from_utf8_lossy(&body).contains("65536-byte limit"));

    // Gzip bomb: 64 MiB of zeros in ~64 KiB refused without inflating it.
    let bomb = gzip(&vec![0u8; 64 * 1024 * 1024]);
    let (status, _, _) =
        post(&server, "application/x-protobuf", &[("content-encoding", "gzip")], bomb);
    assert_eq!(status, 413);

    // Unsupported content encoding: 415.
    let (status, _, _) =
        post(&server, "application/x-protobuf", &[("content-encoding", "br")], protobuf.clone());
    assert_eq!(status, 415);

    // A trace id of the wrong length rejects the span, not the request: partial success.
    let short_id = JSON_BODY.replace("5B8EFFF798038103D269B633813FC60C", "5B8EFFF798038103");
    let (status, _, body) = post(&server, "application/json", &[], short_id.into_bytes());
    assert_eq!(status, 200);
    let partial = json_error(&body);
    assert_eq!(partial["partialSuccess"]["rejectedSpans"], 1);
    assert!(
        partial["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("expected 16 bytes, got 8")
    );

    // Nothing of the above was stored, and the server still serves.
    let (status, metrics) =
        (200, reqwest::blocking::get(server.url("/metrics")).unwrap().text().unwrap());
    assert_eq!(status, 200);
    assert!(metrics.contains("spanblame_spans_accepted_total 0"), "{metrics}");
    assert!(metrics.contains("spanblame_spans_rejected_total 1"), "{metrics}");
    let (status, _) = server.get_json("/healthz");
    assert_eq!(status, 200);
    let (status, body) = server.get_json("/api/v1/traces/not-a-trace-id");
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_argument")));
    let (status, body) = server.get_json("/api/v1/traces/5b8efff798038103d269b633813fc60c");
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
}

#[test]
fn unauthenticated_exports_are_refused_when_auth_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("spanblame.toml");
    std::fs::write(
        &config,
        "[ingest]\nrequire_auth = true\n[[ingest.tokens]]\nname = \"ci\"\nsecret_env = \"IT_INGEST_TOKEN\"\n",
    )
    .unwrap();
    let token = "a-long-ingest-token-for-tests-0001";
    let server = TestServer::start_with_env(
        dir.path(),
        &[("SPANBLAME_CONFIG", config.to_str().unwrap()), ("IT_INGEST_TOKEN", token)],
    );
    for headers in
        [vec![], vec![("authorization", "Bearer wrong-token")], vec![("authorization", token)]]
    {
        let (status, _, body) = post(&server, "application/json", &headers, JSON_BODY.into());
        assert_eq!(status, 401, "{headers:?}");
        assert_eq!(json_error(&body)["error"]["code"], "unauthenticated");
    }
    let bearer = format!("Bearer {token}");
    let (status, _, _) =
        post(&server, "application/json", &[("authorization", &bearer)], JSON_BODY.into());
    assert_eq!(status, 200);

    // gRPC without a token: UNAUTHENTICATED.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let code = runtime.block_on(async {
        let mut client =
            TraceServiceClient::connect(format!("http://{}", server.otlp_grpc)).await.unwrap();
        let request: ExportTraceServiceRequest = serde_json::from_str(JSON_BODY).unwrap();
        client.export(request).await.unwrap_err().code()
    });
    assert_eq!(code, tonic::Code::Unauthenticated);
}
