//! From model spans back to OTLP's wire messages, for the read APIs that answer in OTLP
//! (Tempo's trace by id): spans grouped by resource and scope as they arrived, each group in
//! the order of its first span.

use model::{KeyValue, Resource, Scope, Span, Value};
use opentelemetry_proto::tonic::common::v1 as wire_common;
use opentelemetry_proto::tonic::common::v1::any_value::Value as WireValue;
use opentelemetry_proto::tonic::resource::v1 as wire_resource;
use opentelemetry_proto::tonic::trace::v1 as wire;

pub use wire::TracesData;

/// The spans of one scope, in a resource's group.
type ScopeGroup<'a> = (&'a Scope, Vec<&'a Span>);

/// `spans` as OTLP `TracesData`: one `ResourceSpans` per distinct resource, one `ScopeSpans`
/// per distinct scope within it.
pub fn traces_data(spans: &[Span]) -> TracesData {
    let mut groups: Vec<(&Resource, Vec<ScopeGroup<'_>>)> = Vec::new();
    for span in spans {
        let resource = &*span.resource;
        let at = match groups.iter().position(|(r, _)| *r == resource) {
            Some(at) => at,
            None => {
                groups.push((resource, Vec::new()));
                groups.len() - 1
            }
        };
        let scopes = &mut groups[at].1;
        let scope = &*span.scope;
        match scopes.iter_mut().find(|(s, _)| *s == scope) {
            Some((_, spans)) => spans.push(span),
            None => scopes.push((scope, vec![span])),
        }
    }
    TracesData {
        resource_spans: groups
            .into_iter()
            .map(|(resource, scopes)| wire::ResourceSpans {
                resource: Some(wire_resource::Resource {
                    attributes: key_values(&resource.attributes),
                    dropped_attributes_count: resource.dropped_attributes_count,
                    entity_refs: Vec::new(),
                }),
                schema_url: resource.schema_url.clone(),
                scope_spans: scopes
                    .into_iter()
                    .map(|(scope, spans)| wire::ScopeSpans {
                        scope: Some(wire_common::InstrumentationScope {
                            name: scope.name.clone(),
                            version: scope.version.clone(),
                            attributes: key_values(&scope.attributes),
                            dropped_attributes_count: scope.dropped_attributes_count,
                        }),
                        schema_url: scope.schema_url.clone(),
                        spans: spans.into_iter().map(span).collect(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The protobuf encoding of `data`.
pub fn encode_protobuf(data: &TracesData) -> Vec<u8> {
    prost::Message::encode_to_vec(data)
}

/// OTLP/JSON of `data` (ids in hex, 64-bit numbers as strings, names in lowerCamelCase).
pub fn encode_json(data: &TracesData) -> serde_json::Value {
    serde_json::to_value(data).unwrap_or_default()
}

fn span(span: &Span) -> wire::Span {
    wire::Span {
        trace_id: span.trace_id.as_bytes().to_vec(),
        span_id: span.span_id.as_bytes().to_vec(),
        trace_state: span.trace_state.clone(),
        parent_span_id: span.parent_span_id.map(|p| p.as_bytes().to_vec()).unwrap_or_default(),
        flags: span.flags,
        name: span.name.clone(),
        kind: span.kind as i32,
        start_time_unix_nano: span.start_time_unix_nanos,
        end_time_unix_nano: span.end_time_unix_nanos,
        attributes: key_values(&span.attributes),
        dropped_attributes_count: span.dropped_attributes_count,
        events: span
            .events
            .iter()
            .map(|e| wire::span::Event {
                time_unix_nano: e.time_unix_nanos,
                name: e.name.clone(),
                attributes: key_values(&e.attributes),
                dropped_attributes_count: e.dropped_attributes_count,
            })
            .collect(),
        dropped_events_count: span.dropped_events_count,
        links: span
            .links
            .iter()
            .map(|l| wire::span::Link {
                trace_id: l.trace_id.as_bytes().to_vec(),
                span_id: l.span_id.as_bytes().to_vec(),
                trace_state: l.trace_state.clone(),
                attributes: key_values(&l.attributes),
                dropped_attributes_count: l.dropped_attributes_count,
                flags: l.flags,
            })
            .collect(),
        dropped_links_count: span.dropped_links_count,
        status: Some(wire::Status {
            message: span.status.message.clone(),
            code: span.status.code as i32,
        }),
    }
}

pub fn key_values(attributes: &[KeyValue]) -> Vec<wire_common::KeyValue> {
    attributes
        .iter()
        .map(|kv| wire_common::KeyValue {
            key: kv.key.clone(),
            value: Some(any_value(&kv.value)),
            ..Default::default()
        })
        .collect()
}

pub fn any_value(value: &Value) -> wire_common::AnyValue {
    let value = match value {
        Value::String(s) => Some(WireValue::StringValue(s.clone())),
        Value::Bool(b) => Some(WireValue::BoolValue(*b)),
        Value::Int(n) => Some(WireValue::IntValue(*n)),
        Value::Double(x) => Some(WireValue::DoubleValue(*x)),
        Value::Bytes(b) => Some(WireValue::BytesValue(b.clone())),
        Value::Array(items) => Some(WireValue::ArrayValue(wire_common::ArrayValue {
            values: items.iter().map(any_value).collect(),
        })),
        Value::KvList(items) => {
            Some(WireValue::KvlistValue(wire_common::KeyValueList { values: key_values(items) }))
        }
        Value::Empty => None,
    };
    wire_common::AnyValue { value }
}

/// `data` as field 1 of an enclosing message, as Tempo's `TraceByIDResponse` (v2) carries
/// its trace (whose own field 1 holds the resource spans, as `TracesData` does).
pub fn encode_protobuf_in_field_one(data: &TracesData) -> Vec<u8> {
    let inner = encode_protobuf(data);
    let mut out = Vec::with_capacity(inner.len() + 11);
    prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(inner.len() as u64, &mut out);
    out.extend_from_slice(&inner);
    out
}
