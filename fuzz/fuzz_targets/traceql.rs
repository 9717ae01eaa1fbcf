//! TraceQL queries: the parser must never panic, what it reads must print back to text that
//! reads to the same query, and running it over a small trace must never panic.

#![no_main]

use std::sync::Arc;

use model::{KeyValue, Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode, TraceId, Value};

fn span(id: u8, parent: Option<u8>, service: &str) -> Span {
    Span {
        trace_id: TraceId::from_bytes([1; 16]).unwrap(),
        span_id: SpanId::from_bytes([id; 8]).unwrap(),
        parent_span_id: parent.map(|p| SpanId::from_bytes([p; 8]).unwrap()),
        trace_state: String::new(),
        flags: 0,
        name: format!("op {id}"),
        kind: SpanKind::Server,
        start_time_unix_nanos: u64::from(id) * 1_000,
        end_time_unix_nanos: u64::from(id) * 2_000,
        attributes: vec![
            KeyValue::new("a", Value::Int(i64::from(id))),
            KeyValue::new("s", Value::String(format!("v{id}"))),
        ],
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status: Status { code: StatusCode::Error, message: "x".into() },
        resource: Arc::new(Resource {
            attributes: vec![KeyValue::new("service.name", Value::String(service.into()))],
            ..Resource::default()
        }),
        scope: Arc::new(Scope::default()),
    }
}

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let Ok(query) = traceql::parse(text) else { return };
    let printed = query.to_string();
    let again = traceql::parse(&printed).expect("the canonical text reads back");
    assert_eq!(query.pipeline, again.pipeline, "{printed}");
    let spans = vec![span(1, None, "a"), span(2, Some(1), "b"), span(3, Some(2), "a"), span(4, Some(9), "c")];
    let trace = traceql::Trace::new(&spans, vec![true, true, false, true]);
    let _ = query.evaluate(&trace, &mut traceql::NoExtensions);
    let _ = query.required();
});
