//! From OTLP's wire messages to model spans: id validation, attribute limits, and the count
//! and first reason of rejected spans that OTLP reports as `partial_success`.

use std::sync::Arc;

use model::{
    Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode, TraceId,
    Value,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest,
};
use opentelemetry_proto::tonic::common::v1 as wire_common;
use opentelemetry_proto::tonic::common::v1::any_value::Value as WireValue;
use opentelemetry_proto::tonic::trace::v1 as wire;

use crate::DecodeLimits;

/// Nesting depth kept for array and key-value-list attribute values; deeper levels become empty.
const MAX_VALUE_DEPTH: usize = 8;

/// The outcome of converting one export request: the valid spans and what was rejected.
#[derive(Debug, Default)]
pub struct Converted {
    pub spans: Vec<Span>,
    pub rejected_spans: u64,
    /// The first rejection, with where it was in the request; OTLP's `error_message`.
    pub first_rejection: Option<String>,
    /// Attribute values shortened to the length limit (for metrics).
    pub truncated_values: u64,
}

impl Converted {
    /// OTLP's `partial_success`, present only when something was rejected.
    pub fn partial_success(&self) -> Option<ExportTracePartialSuccess> {
        let first = self.first_rejection.as_ref()?;
        Some(ExportTracePartialSuccess {
            rejected_spans: i64::try_from(self.rejected_spans).unwrap_or(i64::MAX),
            error_message: if self.rejected_spans > 1 {
                format!("{} spans rejected; first: {first}", self.rejected_spans)
            } else {
                first.clone()
            },
        })
    }
}

/// Converts every span of the request, keeping the valid ones.
pub fn convert(request: ExportTraceServiceRequest, limits: &DecodeLimits) -> Converted {
    let mut out = Converted::default();
    for (resource_idx, resource_spans) in request.resource_spans.into_iter().enumerate() {
        let wire_resource = resource_spans.resource.unwrap_or_default();
        let mut resource = Resource {
            attributes: Vec::new(),
            dropped_attributes_count: wire_resource.dropped_attributes_count,
            schema_url: resource_spans.schema_url,
        };
        resource.attributes = key_values(
            wire_resource.attributes,
            limits,
            &mut resource.dropped_attributes_count,
            &mut out.truncated_values,
        );
        let resource = Arc::new(resource);
        for (scope_idx, scope_spans) in resource_spans.scope_spans.into_iter().enumerate() {
            let wire_scope = scope_spans.scope.unwrap_or_default();
            let mut scope = Scope {
                name: wire_scope.name,
                version: wire_scope.version,
                attributes: Vec::new(),
                dropped_attributes_count: wire_scope.dropped_attributes_count,
                schema_url: scope_spans.schema_url,
            };
            scope.attributes = key_values(
                wire_scope.attributes,
                limits,
                &mut scope.dropped_attributes_count,
                &mut out.truncated_values,
            );
            let scope = Arc::new(scope);
            for (span_idx, wire_span) in scope_spans.spans.into_iter().enumerate() {
                match convert_span(wire_span, &resource, &scope, limits, &mut out.truncated_values)
                {
                    Ok(span) => out.spans.push(span),
                    Err(reason) => {
                        out.rejected_spans += 1;
                        if out.first_rejection.is_none() {
                            out.first_rejection = Some(format!(
                                "resourceSpans[{resource_idx}].scopeSpans[{scope_idx}].spans[{span_idx}]: {reason}"
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

fn convert_span(
    span: wire::Span,
    resource: &Arc<Resource>,
    scope: &Arc<Scope>,
    limits: &DecodeLimits,
    truncated_values: &mut u64,
) -> Result<Span, String> {
    let trace_id =
        TraceId::from_slice(&span.trace_id).map_err(|e| format!("invalid `traceId`: {e}"))?;
    let span_id =
        SpanId::from_slice(&span.span_id).map_err(|e| format!("invalid `spanId`: {e}"))?;
    let parent_span_id = match span.parent_span_id.as_slice() {
        [] => None,
        bytes if bytes.iter().all(|b| *b == 0) && bytes.len() == SpanId::LEN => None,
        bytes => {
            Some(SpanId::from_slice(bytes).map_err(|e| format!("invalid `parentSpanId`: {e}"))?)
        }
    };
    if span.end_time_unix_nano < span.start_time_unix_nano {
        return Err(format!(
            "`endTimeUnixNano` ({}) is before `startTimeUnixNano` ({})",
            span.end_time_unix_nano, span.start_time_unix_nano
        ));
    }
    if span.start_time_unix_nano == 0 {
        return Err("`startTimeUnixNano` is missing".to_owned());
    }

    let mut dropped_attributes_count = span.dropped_attributes_count;
    let attributes =
        key_values(span.attributes, limits, &mut dropped_attributes_count, truncated_values);

    let mut dropped_events_count = span.dropped_events_count;
    let mut events = Vec::with_capacity(span.events.len().min(limits.max_events_per_span));
    for event in span.events {
        if events.len() == limits.max_events_per_span {
            dropped_events_count = dropped_events_count.saturating_add(1);
            continue;
        }
        let mut dropped = event.dropped_attributes_count;
        events.push(Event {
            time_unix_nanos: event.time_unix_nano,
            name: event.name,
            attributes: key_values(event.attributes, limits, &mut dropped, truncated_values),
            dropped_attributes_count: dropped,
        });
    }

    let mut dropped_links_count = span.dropped_links_count;
    let mut links = Vec::with_capacity(span.links.len().min(limits.max_links_per_span));
    for link in span.links {
        let ids = (TraceId::from_slice(&link.trace_id), SpanId::from_slice(&link.span_id));
        let (Ok(trace_id), Ok(span_id)) = ids else {
            // A link to an invalid id points nowhere; drop it and say so in the count.
            dropped_links_count = dropped_links_count.saturating_add(1);
            continue;
        };
        if links.len() == limits.max_links_per_span {
            dropped_links_count = dropped_links_count.saturating_add(1);
            continue;
        }
        let mut dropped = link.dropped_attributes_count;
        links.push(Link {
            trace_id,
            span_id,
            trace_state: link.trace_state,
            attributes: key_values(link.attributes, limits, &mut dropped, truncated_values),
            dropped_attributes_count: dropped,
            flags: link.flags,
        });
    }

    let status = span.status.unwrap_or_default();
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id,
        trace_state: span.trace_state,
        flags: span.flags,
        name: span.name,
        kind: SpanKind::from_otlp(span.kind),
        start_time_unix_nanos: span.start_time_unix_nano,
        end_time_unix_nanos: span.end_time_unix_nano,
        attributes,
        dropped_attributes_count,
        events,
        dropped_events_count,
        links,
        dropped_links_count,
        status: Status { code: StatusCode::from_otlp(status.code), message: status.message },
        resource: Arc::clone(resource),
        scope: Arc::clone(scope),
    })
}

/// Converts attributes, keeping at most `max_attributes` and counting the rest in `dropped`.
fn key_values(
    wire: Vec<wire_common::KeyValue>,
    limits: &DecodeLimits,
    dropped: &mut u32,
    truncated_values: &mut u64,
) -> Vec<KeyValue> {
    let kept = wire.len().min(limits.max_attributes);
    let over = u32::try_from(wire.len() - kept).unwrap_or(u32::MAX);
    *dropped = dropped.saturating_add(over);
    wire.into_iter()
        .take(kept)
        .map(|kv| KeyValue { key: kv.key, value: value(kv.value, limits, 0, truncated_values) })
        .collect()
}

fn value(
    wire: Option<wire_common::AnyValue>,
    limits: &DecodeLimits,
    depth: usize,
    truncated_values: &mut u64,
) -> Value {
    let Some(inner) = wire.and_then(|v| v.value) else { return Value::Empty };
    if depth >= MAX_VALUE_DEPTH {
        return Value::Empty;
    }
    match inner {
        WireValue::StringValue(mut s) => {
            if s.len() > limits.max_attribute_value_bytes {
                let mut end = limits.max_attribute_value_bytes;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
                *truncated_values += 1;
            }
            Value::String(s)
        }
        WireValue::BoolValue(b) => Value::Bool(b),
        WireValue::IntValue(i) => Value::Int(i),
        WireValue::DoubleValue(d) => Value::Double(d),
        WireValue::BytesValue(mut b) => {
            if b.len() > limits.max_attribute_value_bytes {
                b.truncate(limits.max_attribute_value_bytes);
                *truncated_values += 1;
            }
            Value::Bytes(b)
        }
        WireValue::ArrayValue(array) => Value::Array(
            array
                .values
                .into_iter()
                .take(limits.max_attributes)
                .map(|v| value(Some(v), limits, depth + 1, truncated_values))
                .collect(),
        ),
        WireValue::KvlistValue(list) => Value::KvList(
            list.values
                .into_iter()
                .take(limits.max_attributes)
                .map(|kv| KeyValue {
                    key: kv.key,
                    value: value(kv.value, limits, depth + 1, truncated_values),
                })
                .collect(),
        ),
        // Only meaningful for the profiling signal; the spec says to treat it as absent.
        WireValue::StringValueStrindex(_) => Value::Empty,
    }
}
