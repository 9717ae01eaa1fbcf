//! Decoder behaviour on hand-written OTLP/JSON, hostile bodies, and arbitrary bytes.

use std::io::Write;

use model::{StatusCode, Value};
use proptest::prelude::*;

use crate::{
    ContentEncoding, DecodeError, DecodeLimits, convert, decode_json, decode_protobuf, decompress,
};

/// The OTLP/JSON mapping: hex ids in either case, lowerCamelCase keys, int64 as strings or
/// numbers, enums as integers.
const SPEC_JSON: &str = r#"{
  "resourceSpans": [{
    "resource": {"attributes": [
      {"key": "service.name", "value": {"stringValue": "checkout"}},
      {"key": "service.version", "value": {"stringValue": "1.2.3"}}
    ]},
    "scopeSpans": [{
      "scope": {"name": "my.library", "version": "1.0.0"},
      "spans": [{
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": "EEE19B7EC3C1B174",
        "parentSpanId": "EEE19B7EC3C1B173",
        "name": "POST /cart",
        "kind": 2,
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": 1544712661000000000,
        "attributes": [
          {"key": "http.route", "value": {"stringValue": "/cart"}},
          {"key": "retries", "value": {"intValue": "3"}},
          {"key": "ratio", "value": {"doubleValue": 0.5}},
          {"key": "cached", "value": {"boolValue": true}},
          {"key": "blob", "value": {"bytesValue": "AAEC"}},
          {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": 7}]}}},
          {"key": "nested", "value": {"kvlistValue": {"values": [{"key": "k", "value": {"stringValue": "v"}}]}}}
        ],
        "events": [{"timeUnixNano": "1544712660500000000", "name": "cache miss",
                    "attributes": [{"key": "key", "value": {"stringValue": "cart:42"}}]}],
        "links": [{"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
                   "traceState": "rojo=00f067aa0ba902b7"}],
        "status": {"code": 2, "message": "payment declined"}
      }]
    }]
  }]
}"#;

#[test]
fn decodes_the_otlp_json_mapping() {
    let converted = convert(decode_json(SPEC_JSON.as_bytes()).unwrap(), &DecodeLimits::default());
    assert_eq!(converted.rejected_spans, 0);
    let span = &converted.spans[0];
    assert_eq!(span.trace_id.to_hex(), "5b8efff798038103d269b633813fc60c");
    assert_eq!(span.parent_span_id.unwrap().to_hex(), "eee19b7ec3c1b173");
    assert_eq!(span.start_time_unix_nanos, 1_544_712_660_000_000_000);
    assert_eq!(span.duration_nanos(), 1_000_000_000);
    assert_eq!(span.kind, model::SpanKind::Server);
    assert_eq!(span.status.code, StatusCode::Error);
    assert_eq!(span.status.message, "payment declined");
    let attr = |key: &str| span.attributes.iter().find(|kv| kv.key == key).unwrap().value.clone();
    assert_eq!(attr("retries"), Value::Int(3));
    assert_eq!(attr("ratio"), Value::Double(0.5));
    assert_eq!(attr("cached"), Value::Bool(true));
    assert_eq!(attr("blob"), Value::Bytes(vec![0, 1, 2]));
    assert_eq!(attr("tags"), Value::Array(vec![Value::String("a".into()), Value::Int(7)]));
    assert_eq!(span.events[0].name, "cache miss");
    assert_eq!(span.events[0].time_unix_nanos, 1_544_712_660_500_000_000);
    assert_eq!(span.links[0].trace_state, "rojo=00f067aa0ba902b7");
    assert_eq!(span.scope.name, "my.library");
    let identity = span.identity();
    assert_eq!(
        (identity.service.as_str(), identity.version.as_deref()),
        ("checkout", Some("1.2.3"))
    );
}

#[test]
fn rejects_snake_case_json_instead_of_accepting_nothing() {
    let body = br#"{"resource_spans":[{"scope_spans":[]}]}"#;
    assert!(matches!(decode_json(body), Err(DecodeError::SnakeCaseJson)));
}

#[test]
fn rejects_enum_names_where_the_spec_requires_integers() {
    let body = SPEC_JSON.replace("\"kind\": 2", "\"kind\": \"SPAN_KIND_SERVER\"");
    assert!(matches!(decode_json(body.as_bytes()), Err(DecodeError::Json(_))));
}

#[test]
fn invalid_ids_reject_the_span_not_the_batch() {
    let body = SPEC_JSON.replace("5B8EFFF798038103D269B633813FC60C", "5B8EFFF798038103");
    let converted = convert(decode_json(body.as_bytes()).unwrap(), &DecodeLimits::default());
    assert_eq!(converted.spans.len(), 0);
    assert_eq!(converted.rejected_spans, 1);
    let partial = converted.partial_success().unwrap();
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("resourceSpans[0].scopeSpans[0].spans[0]"),
        "{partial:?}"
    );
    assert!(partial.error_message.contains("`traceId`: expected 16 bytes, got 8"), "{partial:?}");
}

#[test]
fn limits_truncate_values_and_count_dropped_attributes() {
    let limits =
        DecodeLimits { max_attributes: 3, max_attribute_value_bytes: 2, ..DecodeLimits::default() };
    let converted = convert(decode_json(SPEC_JSON.as_bytes()).unwrap(), &limits);
    let span = &converted.spans[0];
    assert_eq!(span.attributes.len(), 3);
    assert_eq!(span.dropped_attributes_count, 4);
    assert_eq!(span.attributes[0].value, Value::String("/c".into()));
    assert!(converted.truncated_values >= 1);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn gzip_bomb_is_refused_without_inflating_it() {
    let bomb = gzip(&vec![0u8; 64 * 1024 * 1024]);
    assert!(bomb.len() < 100 * 1024, "the bomb is small: {} bytes", bomb.len());
    let err = decompress(&bomb, ContentEncoding::Gzip, &DecodeLimits::default()).unwrap_err();
    assert!(matches!(err, DecodeError::DecompressedTooLarge { .. }), "{err}");
}

#[test]
fn gzip_body_decodes_and_oversized_body_is_refused() {
    let limits = DecodeLimits::default();
    let compressed = gzip(SPEC_JSON.as_bytes());
    let body = decompress(&compressed, ContentEncoding::Gzip, &limits).unwrap();
    assert_eq!(&*body, SPEC_JSON.as_bytes());
    let small = DecodeLimits { max_body_bytes: 10, ..limits };
    let err = decompress(SPEC_JSON.as_bytes(), ContentEncoding::Identity, &small).unwrap_err();
    assert!(matches!(err, DecodeError::BodyTooLarge { limit_bytes: 10 }));
    assert!(matches!(ContentEncoding::parse(Some("br")), Err(DecodeError::UnsupportedEncoding(_))));
}

#[test]
fn truncated_protobuf_is_an_error() {
    use prost::Message;
    let request = decode_json(SPEC_JSON.as_bytes()).unwrap();
    let bytes = request.encode_to_vec();
    assert!(decode_protobuf(&bytes).is_ok());
    assert!(matches!(decode_protobuf(&bytes[..bytes.len() - 7]), Err(DecodeError::Protobuf(_))));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let limits = DecodeLimits::default();
        let shape = crate::measure_protobuf(&bytes);
        if let Ok(request) = decode_protobuf(&bytes) {
            // What decodes was measured (the walk refuses only what prost refuses, or nesting).
            prop_assert!(shape.is_ok() || matches!(shape, Err(DecodeError::TooDeep { .. })), "{shape:?}");
            let _ = convert(request, &limits);
        }
        let _ = crate::measure_json(&bytes);
        if let Ok(request) = decode_json(&bytes) {
            let _ = convert(request, &limits);
        }
        let _ = decompress(&bytes, ContentEncoding::Gzip, &limits);
    }

    #[test]
    fn decoders_never_panic_on_mutated_valid_bodies(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        use prost::Message;
        let limits = DecodeLimits::default();
        let mut protobuf = decode_json(SPEC_JSON.as_bytes()).unwrap().encode_to_vec();
        let mut json = SPEC_JSON.as_bytes().to_vec();
        for (idx, byte) in &flips {
            let i = idx.index(protobuf.len());
            protobuf[i] = *byte;
            let j = idx.index(json.len());
            json[j] = *byte;
        }
        protobuf.truncate(cut.index(protobuf.len() + 1));
        let shape = crate::measure_protobuf(&protobuf);
        let _ = crate::measure_json(&json);
        if let Ok(request) = decode_protobuf(&protobuf) {
            prop_assert!(shape.is_ok(), "{shape:?}");
            let _ = convert(request, &limits);
        }
        if let Ok(request) = decode_json(&json) {
            let _ = convert(request, &limits);
        }
    }
}

/// The allocator of the binary, whose per-thread counters tell what decoding holds.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Runs `f` and returns its result with the bytes it left allocated on this thread.
fn with_live_bytes<T>(f: impl FnOnce() -> T) -> (T, u64) {
    use tikv_jemalloc_ctl::thread;
    let allocated = thread::allocatedp::mib().unwrap().read().unwrap();
    let deallocated = thread::deallocatedp::mib().unwrap().read().unwrap();
    let (allocated_before, deallocated_before) = (allocated.get(), deallocated.get());
    let out = f();
    let live =
        (allocated.get() - allocated_before).saturating_sub(deallocated.get() - deallocated_before);
    (out, live)
}

/// Bodies whose decoded size the shape must bound: real ones and the attacks of issue 20.
fn shaped_bodies() -> Vec<(&'static str, Vec<u8>)> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;
    let request = |spans: Vec<Span>| ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..ScopeSpans::default() }],
            ..ResourceSpans::default()
        }],
    };
    let text = |key: &str, value: String| KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value)) }),
        ..KeyValue::default()
    };
    let realistic: Vec<Span> = (0..512u64)
        .map(|i| Span {
            trace_id: (i / 5 + 1).to_le_bytes().repeat(2),
            span_id: (i + 1).to_le_bytes().to_vec(),
            name: format!("GET /items/{}", i % 6),
            start_time_unix_nano: 1_763_700_000_000_000_000 + i,
            end_time_unix_nano: 1_763_700_000_001_000_000 + i,
            attributes: (0..10)
                .map(|a| text(&format!("attribute.{a}"), format!("value-{i}")))
                .collect(),
            ..Span::default()
        })
        .collect();
    let mut nested = AnyValue::default();
    for _ in 0..30 {
        nested = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![nested] })),
        };
    }
    let attribute_flood =
        vec![Span { attributes: vec![KeyValue::default(); 200_000], ..Span::default() }];
    vec![
        ("the OTLP/JSON example", decode_json(SPEC_JSON.as_bytes()).unwrap().encode_to_vec()),
        ("512 realistic spans", request(realistic).encode_to_vec()),
        ("200k empty attributes on one span", request(attribute_flood).encode_to_vec()),
        ("100k empty spans", request(vec![Span::default(); 100_000]).encode_to_vec()),
        (
            "a value nested 30 deep",
            request(vec![Span {
                attributes: vec![KeyValue {
                    key: "n".into(),
                    value: Some(nested),
                    ..KeyValue::default()
                }],
                ..Span::default()
            }])
            .encode_to_vec(),
        ),
    ]
}

#[test]
fn shape_bounds_what_decoding_allocates() {
    for (what, protobuf) in shaped_bodies() {
        let shape = crate::measure_protobuf(&protobuf).unwrap();
        let (request, live) = with_live_bytes(|| decode_protobuf(&protobuf).unwrap());
        assert!(
            live <= shape.decoded_bytes,
            "{what}: protobuf decoded to {live} bytes, shape said at most {}",
            shape.decoded_bytes
        );
        let num_spans: usize =
            request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
        assert_eq!(shape.num_spans, num_spans as u64, "{what}");

        let json = serde_json::to_vec(&request).unwrap();
        let json_shape = crate::measure_json(&json).unwrap();
        let (_, live) = with_live_bytes(|| decode_json(&json).unwrap());
        assert!(
            live <= json_shape.decoded_bytes,
            "{what}: JSON decoded to {live} bytes, shape said at most {}",
            json_shape.decoded_bytes
        );
        assert_eq!(json_shape.num_spans, num_spans as u64, "{what}");
    }
}

/// Found by `cargo xtask fuzz` (otlp_protobuf): an unknown field sent as a group, which prost
/// skips, must be skipped by the measure too.
#[test]
fn groups_are_skipped_as_the_decoder_skips_them() {
    let body = [0x2b, 0x2c, 0x0a, 0x00];
    assert!(decode_protobuf(&body).is_ok());
    assert_eq!(crate::measure_protobuf(&body).unwrap().num_spans, 0);
    let unterminated = [0x2b, 0x0a, 0x00];
    assert!(decode_protobuf(&unterminated).is_err());
    assert!(crate::measure_protobuf(&unterminated).is_err());
}

#[test]
fn real_batches_fit_the_default_caps_and_floods_do_not() {
    let limits = DecodeLimits::default();
    for (what, protobuf) in shaped_bodies() {
        let shape = crate::measure_protobuf(&protobuf).unwrap();
        let ratio = shape.decoded_bytes as f64 / protobuf.len() as f64;
        match what {
            // A full body of real spans stays under the decoded cap.
            "512 realistic spans" => assert!(
                ratio * limits.max_body_bytes as f64 <= limits.max_decoded_bytes as f64,
                "{what}: {ratio:.1}x"
            ),
            // Tiny elements cost far more decoded than sent; a full body of them is refused.
            "200k empty attributes on one span" | "100k empty spans" => assert!(
                ratio * limits.max_body_bytes as f64 > limits.max_decoded_bytes as f64,
                "{what}: {ratio:.1}x"
            ),
            _ => {}
        }
    }
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert!(matches!(crate::measure_json(deep.as_bytes()), Err(DecodeError::TooDeep { .. })));
}

/// The example span of Zipkin's API documentation (zipkin-api, `POST /api/v2/spans`).
const ZIPKIN_EXAMPLE: &str = r#"[{"id":"352bff9a74ca9ad2","traceId":"5af7183fb1d4cf5f","parentId":"6b221d5bc9e6496c","name":"get /api","timestamp":1556604172355737,"duration":1431,"kind":"SERVER","localEndpoint":{"serviceName":"backend","ipv4":"192.168.99.1","port":3306},"remoteEndpoint":{"ipv4":"172.19.0.2","port":58648},"tags":{"http.method":"GET","http.path":"/api","mvc.controller.class":"Frontend","mvc.controller.method":"callBackend"}}]"#;

/// What OpenTelemetry Python's Zipkin JSON exporter sends (1.45.1, recorded).
const ZIPKIN_FROM_OTEL: &str = r#"[{"traceId": "6382185dd3b6752e21cf7c1c3070c0b2", "id": "ece4d0baf5d793a1", "name": "GET /cart/{id}", "timestamp": 1796525462259783, "duration": 4979, "localEndpoint": {"serviceName": "cart-zipkin"}, "kind": "SERVER", "tags": {"http.route": "/cart/{id}", "http.response.status_code": "503", "telemetry.sdk.language": "python", "service.instance.id": "7c113edb", "service.name": "cart-zipkin", "service.version": "3.1.0", "deployment.environment.name": "prod", "vcs.ref.head.revision": "89abcdef0123456789abcdef0123456789abcdef", "otel.library.name": "it.zipkin", "otel.scope.name": "it.zipkin", "otel.scope.version": "0.2.0", "otel.status_code": "ERROR", "error": "upstream failed"}, "annotations": [{"timestamp": 1796525462259819, "value": "{\"cache miss\": {\"cache.key\": \"cart:42\"}}"}], "debug": true}]"#;

fn zipkin_spans(body: &str) -> crate::Converted {
    let request = crate::decode_zipkin(body.as_bytes()).unwrap();
    crate::convert(request, &DecodeLimits::default())
}

#[test]
fn zipkin_documentation_example_reads_as_a_span() {
    let converted = zipkin_spans(ZIPKIN_EXAMPLE);
    assert_eq!(converted.rejected_spans, 0);
    let span = &converted.spans[0];
    assert_eq!(span.trace_id.to_hex(), "00000000000000005af7183fb1d4cf5f");
    assert_eq!(span.span_id.to_hex(), "352bff9a74ca9ad2");
    assert_eq!(span.parent_span_id.unwrap().to_hex(), "6b221d5bc9e6496c");
    assert_eq!(span.name, "get /api");
    assert_eq!(span.kind, model::SpanKind::Server);
    assert_eq!(span.start_time_unix_nanos, 1_556_604_172_355_737_000);
    assert_eq!(span.duration_nanos(), 1_431_000);
    assert_eq!(span.service_name(), "backend");
    assert_eq!(span.attribute("http.method"), Some(&Value::String("GET".into())));
    assert_eq!(span.attribute("network.peer.address"), Some(&Value::String("172.19.0.2".into())));
    assert_eq!(span.attribute("network.peer.port"), Some(&Value::Int(58648)));
    assert_eq!(span.status.code, StatusCode::Unset);
}

#[test]
fn zipkin_from_an_opentelemetry_exporter_keeps_identity_scope_status_and_events() {
    let converted = zipkin_spans(ZIPKIN_FROM_OTEL);
    let span = &converted.spans[0];
    let identity = span.identity();
    assert_eq!(identity.service, "cart-zipkin");
    assert_eq!(identity.version.as_deref(), Some("3.1.0"));
    assert_eq!(identity.environment.as_deref(), Some("prod"));
    assert_eq!(identity.commit.as_deref(), Some("89abcdef0123456789abcdef0123456789abcdef"));
    // The resource holds what the exporter flattened into tags; the span keeps its own.
    let resource_keys: Vec<&str> =
        span.resource.attributes.iter().map(|kv| kv.key.as_str()).collect();
    assert!(resource_keys.contains(&"telemetry.sdk.language"), "{resource_keys:?}");
    assert!(resource_keys.contains(&"service.instance.id"), "{resource_keys:?}");
    let span_keys: Vec<&str> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(span_keys, ["http.response.status_code", "http.route"]);
    assert_eq!((span.scope.name.as_str(), span.scope.version.as_str()), ("it.zipkin", "0.2.0"));
    assert_eq!(span.status.code, StatusCode::Error);
    assert_eq!(span.status.message, "upstream failed");
    assert_eq!(span.events[0].name, "cache miss");
    assert_eq!(span.events[0].attributes[0].key, "cache.key");
    assert_eq!(span.operation(), "/cart/{id}");
}

#[test]
fn zipkin_malformed_ids_reject_the_span_not_the_batch() {
    let body = r#"[
        {"traceId": "not-hex", "id": "352bff9a74ca9ad2", "localEndpoint": {"serviceName": "a"}},
        {"traceId": "5af7183fb1d4cf5f", "id": "352bff9a74ca9ad3", "timestamp": 1556604172355737, "duration": 5, "kind": "SIDEWAYS", "localEndpoint": {"serviceName": "a"}, "annotations": [{"timestamp": 1, "value": "plain"}]}
    ]"#;
    let converted = zipkin_spans(body);
    assert_eq!(converted.rejected_spans, 1);
    assert!(converted.first_rejection.unwrap().contains("traceId"));
    assert_eq!(converted.spans[0].kind, model::SpanKind::Internal);
    assert_eq!(converted.spans[0].events[0].name, "plain");
    for bad in ["{}", "[1]", "[{\"id\": \"01\"}]", "not json"] {
        let error = crate::decode_zipkin(bad.as_bytes()).unwrap_err().to_string();
        assert!(error.contains("Zipkin v2 JSON"), "{bad}: {error}");
    }
}

#[test]
fn zipkin_shape_counts_spans_and_bounds_what_decoding_allocates() {
    let many_tags: String =
        (0..20_000).map(|i| format!("\"k{i}\":\"\"")).collect::<Vec<_>>().join(",");
    let flood = format!(
        r#"[{{"traceId":"5af7183fb1d4cf5f","id":"352bff9a74ca9ad2","tags":{{{many_tags}}}}}]"#
    );
    let spans = format!("[{}]", [ZIPKIN_EXAMPLE.trim_matches(['[', ']'])].repeat(300).join(","));
    for (what, body) in [
        ("the example", ZIPKIN_EXAMPLE.to_owned()),
        ("an exporter's span", ZIPKIN_FROM_OTEL.to_owned()),
        ("20k empty tags", flood),
        ("300 spans", spans),
    ] {
        let shape = crate::measure_zipkin(body.as_bytes()).unwrap();
        // Decoding and converting, as the server reserves for both.
        let (converted, live) = with_live_bytes(|| {
            crate::convert(crate::decode_zipkin(body.as_bytes()).unwrap(), &DecodeLimits::default())
        });
        assert!(
            live <= shape.decoded_bytes,
            "{what}: decoded to {live} bytes, shape said at most {}",
            shape.decoded_bytes
        );
        let num_spans = converted.spans.len() as u64 + converted.rejected_spans;
        assert_eq!(shape.num_spans, num_spans, "{what}");
    }
    let deep = "[{\"tags\": {\"a\": [[[1]]]}}]";
    assert!(matches!(crate::measure_zipkin(deep.as_bytes()), Err(DecodeError::TooDeep { .. })));
}

proptest! {
    #[test]
    fn zipkin_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if crate::measure_zipkin(&bytes).is_ok()
            && let Ok(request) = crate::decode_zipkin(&bytes)
        {
            let _ = crate::convert(request, &DecodeLimits::default());
        }
    }

    #[test]
    fn zipkin_spans_of_any_text_never_panic(
        trace_id in "[0-9a-fA-Fxz]{0,40}",
        id in "[0-9a-f]{0,20}",
        name in "\\PC{0,20}",
        tag in "\\PC{0,10}",
        annotation in "\\PC{0,20}",
    ) {
        let body = serde_json::json!([{"traceId": trace_id, "id": id, "name": name,
            "tags": {tag.clone(): tag}, "annotations": [{"timestamp": 1, "value": annotation}]}]);
        let request = crate::decode_zipkin(body.to_string().as_bytes()).unwrap();
        let _ = crate::convert(request, &DecodeLimits::default());
    }
}
