//! Zipkin v2 JSON (`POST /api/v2/spans`, a JSON array of spans) read as an OTLP export, so it
//! goes through the same [`convert`](crate::convert) (validation, attribute limits, partial
//! success) and the same version-identity rules as OTLP:
//!
//! - `localEndpoint.serviceName` is the resource's `service.name`; the tags that say which
//!   version runs (`service.version`, `deployment.environment(.name)`, commit and repository
//!   tags) and those of resource namespaces (`service.`, `telemetry.`, `deployment.`, `host.`,
//!   `process.`, `container.`, `k8s.`, `cloud.`, `os.`; OpenTelemetry's Zipkin exporters
//!   flatten the resource into tags) join the resource too; `otel.scope.name`/`version` (or
//!   `otel.library.*`) name the scope; the other tags are span attributes;
//! - `kind` maps to the span kind; `timestamp` and `duration` (µs) to start and end;
//!   `annotations` to events (an OpenTelemetry exporter's `{"name": {attributes}}` read back
//!   as the event's name and attributes); `remoteEndpoint` to `peer.service`, `network.peer.address` and
//!   `network.peer.port`;
//! - the `error` tag, or `otel.status_code` = `ERROR`, makes the status an error with the
//!   tag's text as its message; a 64-bit `traceId` is padded to 128 bits with zeros; a span
//!   with a malformed id is rejected alone, through partial success, as OTLP's are.
//!
//! Measured before decoding like OTLP/JSON ([`measure_zipkin`]): spans counted and the decoded
//! size bounded from the text, so a body of tiny tags is refused, not amplified.

use std::collections::BTreeMap;

use model::attribute_names;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as WireValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use serde::Deserialize;

use crate::{DecodeError, Shape};

/// Deepest JSON a Zipkin body has: array → span → endpoint, tags or annotations → annotation.
const MAX_DEPTH: usize = 4;
/// Bytes one decoded JSON value may take at most: its `String` or number, the `KeyValue`
/// and `AnyValue` it becomes, and its share of the vectors holding them.
const DECODED_BYTES_PER_VALUE: u64 = 192;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ZipkinSpan {
    trace_id: String,
    id: String,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    duration: Option<u64>,
    #[serde(default)]
    local_endpoint: Option<Endpoint>,
    #[serde(default)]
    remote_endpoint: Option<Endpoint>,
    #[serde(default)]
    annotations: Vec<Annotation>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Endpoint {
    #[serde(default)]
    service_name: Option<String>,
    #[serde(default)]
    ipv4: Option<String>,
    #[serde(default)]
    ipv6: Option<String>,
    #[serde(default)]
    port: Option<u16>,
}

#[derive(Debug, Deserialize)]
struct Annotation {
    timestamp: u64,
    value: String,
}

/// What decoding a Zipkin body will cost: its spans (the top-level array's elements) and an
/// upper bound of the memory its values take once decoded and converted.
pub fn measure_zipkin(bytes: &[u8]) -> Result<Shape, DecodeError> {
    let mut shape = Shape::default();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut values = 0u64;
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => {
                in_string = true;
                values += 1;
            }
            b'{' | b'[' => {
                depth += 1;
                values += 1;
                if depth > MAX_DEPTH {
                    return Err(DecodeError::TooDeep { limit: MAX_DEPTH });
                }
                if depth == 2 && byte == b'{' {
                    shape.num_spans += 1;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' | b':' => values += 1,
            _ => {}
        }
    }
    shape.decoded_bytes = (bytes.len() as u64)
        .saturating_mul(2)
        .saturating_add(values.saturating_mul(DECODED_BYTES_PER_VALUE));
    Ok(shape)
}

/// A Zipkin v2 JSON body as an OTLP export: one resource per service (and identity tags).
pub fn decode_zipkin(bytes: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    let spans: Vec<ZipkinSpan> = serde_json::from_slice(bytes).map_err(|e| {
        DecodeError::Zipkin(format!("{e}; the body must be a JSON array of Zipkin v2 spans"))
    })?;
    let mut resources: Vec<(Vec<KeyValue>, Vec<ScopeSpans>)> = Vec::new();
    for zipkin in spans {
        let (resource, scope, span) = convert_span(zipkin);
        let at = match resources.iter().position(|(r, _)| *r == resource) {
            Some(at) => at,
            None => {
                resources.push((resource, Vec::new()));
                resources.len() - 1
            }
        };
        let scopes = &mut resources[at].1;
        match scopes.iter_mut().find(|s| s.scope.as_ref() == Some(&scope)) {
            Some(group) => group.spans.push(span),
            None => scopes.push(ScopeSpans {
                scope: Some(scope),
                spans: vec![span],
                schema_url: String::new(),
            }),
        }
    }
    Ok(ExportTraceServiceRequest {
        resource_spans: resources
            .into_iter()
            .map(|(attributes, scope_spans)| ResourceSpans {
                resource: Some(Resource { attributes, ..Resource::default() }),
                scope_spans,
                schema_url: String::new(),
            })
            .collect(),
    })
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(WireValue::StringValue(value.to_owned())) }),
        ..Default::default()
    }
}

/// A hex id of `len` bytes; a shorter trace id (64-bit) is padded with zeros on the left.
/// Malformed: empty, which `convert` rejects for that span alone, saying why.
fn id(text: &str, len: usize) -> Vec<u8> {
    if text.is_empty() || text.len() > len * 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Vec::new();
    }
    let padded = format!("{text:0>width$}", width = len * 2);
    (0..len).filter_map(|i| u8::from_str_radix(&padded[i * 2..i * 2 + 2], 16).ok()).collect()
}

/// Whether a tag belongs to the resource: identity, or a resource namespace.
fn is_resource_tag(key: &str) -> bool {
    const NAMESPACES: &[&str] = &[
        "service.",
        "telemetry.",
        "deployment.",
        "host.",
        "process.",
        "container.",
        "k8s.",
        "cloud.",
        "os.",
    ];
    attribute_names::is_identity(key)
        || attribute_names::COMMIT.contains(&key)
        || attribute_names::REPOSITORY.contains(&key)
        || NAMESPACES.iter().any(|n| key.starts_with(n))
}

/// An annotation as an event: OpenTelemetry's exporters write `{"name": {attributes}}`.
fn event(annotation: Annotation) -> span::Event {
    let time_unix_nano = annotation.timestamp.saturating_mul(1000);
    let parsed: Option<BTreeMap<String, BTreeMap<String, serde_json::Value>>> =
        serde_json::from_str(&annotation.value).ok();
    match parsed.filter(|p| p.len() == 1).and_then(|p| p.into_iter().next()) {
        Some((name, attributes)) => span::Event {
            time_unix_nano,
            name,
            attributes: attributes
                .into_iter()
                .map(|(k, v)| text(&k, &v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect(),
            ..Default::default()
        },
        None => span::Event { time_unix_nano, name: annotation.value, ..Default::default() },
    }
}

fn convert_span(zipkin: ZipkinSpan) -> (Vec<KeyValue>, InstrumentationScope, Span) {
    let local = zipkin.local_endpoint.unwrap_or_default();
    let mut resource =
        vec![text("service.name", local.service_name.as_deref().unwrap_or(model::UNKNOWN_SERVICE))];
    let mut attributes = Vec::new();
    let mut status = Status::default();
    let mut scope = InstrumentationScope { name: "zipkin".into(), ..Default::default() };
    for (key, value) in zipkin.tags {
        match key.as_str() {
            "otel.scope.name" | "otel.library.name" => scope.name = value,
            "otel.scope.version" | "otel.library.version" => scope.version = value,
            "error" => {
                status.code = status::StatusCode::Error as i32;
                status.message = value;
            }
            "otel.status_code" if value.eq_ignore_ascii_case("error") => {
                status.code = status::StatusCode::Error as i32
            }
            "otel.status_code" if value.eq_ignore_ascii_case("ok") => {
                status.code = status::StatusCode::Ok as i32
            }
            "otel.status_description" => status.message = value,
            "service.name" => {}
            _ if is_resource_tag(&key) => resource.push(text(&key, &value)),
            _ => attributes.push(text(&key, &value)),
        }
    }
    if let Some(remote) = zipkin.remote_endpoint {
        if let Some(service) = remote.service_name.filter(|s| !s.is_empty()) {
            attributes.push(text("peer.service", &service));
        }
        if let Some(address) = remote.ipv4.or(remote.ipv6) {
            attributes.push(text("network.peer.address", &address));
        }
        if let Some(port) = remote.port {
            attributes.push(KeyValue {
                key: "network.peer.port".into(),
                value: Some(AnyValue { value: Some(WireValue::IntValue(i64::from(port))) }),
                ..Default::default()
            });
        }
    }
    let kind = match zipkin.kind.as_deref().map(str::to_ascii_uppercase).as_deref() {
        Some("SERVER") => span::SpanKind::Server,
        Some("CLIENT") => span::SpanKind::Client,
        Some("PRODUCER") => span::SpanKind::Producer,
        Some("CONSUMER") => span::SpanKind::Consumer,
        // No kind (or one Zipkin does not define): a local span.
        _ => span::SpanKind::Internal,
    };
    let start = zipkin.timestamp.unwrap_or(0).saturating_mul(1000);
    let span = Span {
        trace_id: id(&zipkin.trace_id, 16),
        span_id: id(&zipkin.id, 8),
        parent_span_id: zipkin.parent_id.as_deref().map_or_else(Vec::new, |p| id(p, 8)),
        name: zipkin.name.unwrap_or_default(),
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start.saturating_add(zipkin.duration.unwrap_or(0).saturating_mul(1000)),
        attributes,
        events: zipkin.annotations.into_iter().map(event).collect(),
        status: Some(status),
        ..Default::default()
    };
    (resource, scope, span)
}
