//! Real OpenTelemetry SDK exporters send spans; the API returns them with attributes,
//! resource, events, links and status intact.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::json;

use crate::support::{self, TestServer, span_named};

const TOKEN: &str = "collector-token-0123456789abcdef";

fn resource(service: &str) -> Resource {
    Resource::builder()
        .with_service_name(service.to_owned())
        .with_attributes([
            KeyValue::new("service.version", "1.4.2"),
            KeyValue::new("deployment.environment.name", "prod"),
            KeyValue::new("vcs.ref.head.revision", "a01dbef8a0000000000000000000000000000000"),
        ])
        .build()
}

/// Records a parent and a child span, ends them, and returns the trace id.
fn record_trace(provider: &SdkTracerProvider) -> String {
    let tracer = provider.tracer("it.rust");
    let linked = SpanContext::new(
        TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
        SpanId::from_hex("b7ad6b7169203331").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let mut parent = tracer
        .span_builder("POST /cart")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.route", "/cart"),
            KeyValue::new("http.response.status_code", 503),
            KeyValue::new("cart.ratio", 0.25),
            KeyValue::new("cart.cached", false),
        ])
        .with_links(vec![Link::new(linked, vec![KeyValue::new("link.reason", "retry-of")], 0)])
        .start(&tracer);
    parent.add_event("cache miss", vec![KeyValue::new("cache.key", "cart:42")]);
    let trace_id = parent.span_context().trace_id().to_string();
    let cx = Context::current_with_span(parent);
    let mut child = tracer
        .span_builder("SELECT carts")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("code.file.path", "cart/store.rs"),
            KeyValue::new("code.function.name", "cart::store::load"),
            KeyValue::new("code.line.number", 17),
        ])
        .start_with_context(&tracer, &cx);
    child.end();
    let parent = cx.span();
    parent.set_status(Status::error("upstream failed"));
    parent.end();
    trace_id
}

fn check_rust_trace(trace: &serde_json::Value) {
    let parent = span_named(trace, "POST /cart");
    let child = span_named(trace, "SELECT carts");
    assert_eq!(child["parent_span_id"], parent["span_id"]);
    assert_eq!(parent["kind"], "server");
    assert_eq!(parent["status"], json!({"code": "error", "message": "upstream failed"}));
    assert_eq!(parent["attributes"]["http.route"], "/cart");
    assert_eq!(parent["attributes"]["http.response.status_code"], 503);
    assert_eq!(parent["attributes"]["cart.ratio"], 0.25);
    assert_eq!(parent["attributes"]["cart.cached"], false);
    assert_eq!(parent["events"][0]["name"], "cache miss");
    assert_eq!(parent["events"][0]["attributes"]["cache.key"], "cart:42");
    assert_eq!(parent["links"][0]["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(parent["links"][0]["span_id"], "b7ad6b7169203331");
    assert_eq!(parent["links"][0]["attributes"]["link.reason"], "retry-of");
    assert_eq!(parent["resource"]["attributes"]["service.name"], "checkout");
    assert_eq!(parent["resource"]["attributes"]["telemetry.sdk.language"], "rust");
    assert_eq!(parent["scope"]["name"], "it.rust");
    // Version identity.
    assert_eq!(parent["service"], "checkout");
    assert_eq!(parent["version"], "1.4.2");
    assert_eq!(parent["environment"], "prod");
    assert_eq!(parent["commit"], "a01dbef8a0000000000000000000000000000000");
    assert_eq!(child["code"]["file_path"], "cart/store.rs");
    assert_eq!(child["code"]["function_name"], "cart::store::load");
    assert_eq!(child["code"]["line_number"], 17);
    assert_eq!(child["kind"], "client");
}

#[test]
fn rust_sdk_exports_over_grpc_and_http_protobuf_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(
        dir.path(),
        &[
            ("SPANBLAME_INGEST_REQUIRE_AUTH", "true"),
            ("SPANBLAME_IT_TOKEN", TOKEN),
            // A token list cannot be set through one variable; a file carries it.
            ("SPANBLAME_CONFIG", &write_token_config(dir.path())),
        ],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // gRPC, with the token as gRPC metadata.
    let grpc_provider = runtime.block_on(async {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://{}", server.otlp_grpc))
            .with_metadata(metadata)
            .with_timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource("checkout"))
            .build()
    });
    let grpc_trace = record_trace(&grpc_provider);
    grpc_provider.force_flush().unwrap();

    // HTTP/protobuf, with the Lightstep header alias.
    let http_exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("http://{}/v1/traces", server.otlp_http))
        .with_headers(HashMap::from([("lightstep-access-token".to_owned(), TOKEN.to_owned())]))
        .build()
        .unwrap();
    let http_provider = SdkTracerProvider::builder()
        .with_simple_exporter(http_exporter)
        .with_resource(resource("checkout"))
        .build();
    let http_trace = record_trace(&http_provider);
    http_provider.force_flush().unwrap();

    check_rust_trace(&server.wait_for_trace(&grpc_trace, 2));
    check_rust_trace(&server.wait_for_trace(&http_trace, 2));
    grpc_provider.shutdown().unwrap();
    http_provider.shutdown().unwrap();
    drop(runtime);
}

fn write_token_config(dir: &std::path::Path) -> String {
    let path = dir.join("spanblame.toml");
    std::fs::write(
        &path,
        "[ingest]\nrequire_auth = true\n[[ingest.tokens]]\nname = \"it\"\nsecret_env = \"SPANBLAME_IT_TOKEN\"\n",
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn python_sdk_exports_over_http_protobuf_round_trip() {
    let python = std::env::var("SPANBLAME_TEST_PYTHON").expect(
        "SPANBLAME_TEST_PYTHON is not set: run the tests with `cargo xtask test`, which installs the OpenTelemetry Python SDK",
    );
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let script = support::manifest_dir().join("tests/it/otel_python_client.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(format!("http://{}/v1/traces", server.otlp_http))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ids: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let trace = server.wait_for_trace(ids["trace_id"].as_str().unwrap(), 2);

    let parent = span_named(&trace, "GET /cart/{id}");
    let child = span_named(&trace, "SELECT carts");
    assert_eq!(parent["span_id"], ids["parent_span_id"]);
    assert_eq!(child["parent_span_id"], ids["parent_span_id"]);
    assert_eq!(parent["status"], json!({"code": "error", "message": "upstream failed"}));
    assert_eq!(parent["attributes"]["http.response.status_code"], 500);
    assert_eq!(parent["attributes"]["cart.ratio"], 0.5);
    assert_eq!(parent["attributes"]["cart.cached"], true);
    assert_eq!(parent["events"][0]["attributes"]["cache.key"], "cart:42");
    assert_eq!(parent["links"][0]["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(parent["links"][0]["attributes"]["link.reason"], "retry-of");
    assert_eq!(parent["resource"]["attributes"]["telemetry.sdk.language"], "python");
    assert_eq!(parent["scope"]["name"], "it.python");
    assert_eq!(parent["scope"]["version"], "0.1.0");
    assert_eq!(parent["operation"], "/cart/{id}");
    assert_eq!(parent["service"], "cart-py");
    assert_eq!(parent["version"], "2.0.1");
    assert_eq!(parent["environment"], "staging");
    assert_eq!(parent["commit"], "0123456789abcdef0123456789abcdef01234567");
    // Old code.* names, namespace joined to the function.
    assert_eq!(child["code"]["file_path"], "cart/store.py");
    assert_eq!(child["code"]["function_name"], "cart.store.load");
    assert_eq!(child["code"]["line_number"], 17);

    let (status, services) = server.get_json("/api/v1/services");
    assert_eq!(status, 200);
    assert_eq!(services["services"][0]["name"], "cart-py");
    assert_eq!(services["services"][0]["versions"][0]["version"], "2.0.1");
    assert_eq!(services["services"][0]["environments"], json!(["staging"]));
}

/// OpenTelemetry Python's Zipkin JSON exporter, on Zipkin's own address and on the main one:
/// the spans come back with their service, version, kind, status, attributes and events.
#[test]
fn python_sdk_zipkin_exporter_spans_arrive_with_their_identity() {
    let python = std::env::var("SPANBLAME_TEST_PYTHON").expect(
        "SPANBLAME_TEST_PYTHON is not set: run the tests with `cargo xtask test`, which installs the OpenTelemetry Python SDK",
    );
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let script = support::manifest_dir().join("tests/it/zipkin_python_client.py");
    for address in [server.zipkin, server.http] {
        let output = std::process::Command::new(&python)
            .arg(&script)
            .arg(format!("http://{address}/api/v2/spans"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "python client failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let ids: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let trace = server.wait_for_trace(ids["trace_id"].as_str().unwrap(), 2);
        let parent = span_named(&trace, "GET /cart/{id}");
        let child = span_named(&trace, "SELECT carts");
        assert_eq!(parent["span_id"], ids["parent_span_id"]);
        assert_eq!(child["parent_span_id"], ids["parent_span_id"]);
        assert_eq!(child["kind"], "client");
        assert_eq!(parent["kind"], "server");
        assert_eq!(parent["status"], json!({"code": "error", "message": "upstream failed"}));
        assert_eq!(parent["attributes"]["http.response.status_code"], "503");
        assert_eq!(parent["events"][0]["name"], "cache miss");
        assert_eq!(parent["scope"]["name"], "it.zipkin");
        assert_eq!(parent["service"], "cart-zipkin");
        assert_eq!(parent["version"], "3.1.0");
        assert_eq!(parent["environment"], "prod");
        assert_eq!(parent["commit"], "89abcdef0123456789abcdef0123456789abcdef");
        assert_eq!(parent["operation"], "/cart/{id}");
    }
}
