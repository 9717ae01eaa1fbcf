//! Jaeger's query API (the HTTP JSON its UI and Grafana's Jaeger data source read), under the
//! `/jaeger` prefix: services, their operations, trace search, a trace by id and the
//! dependency links (from span metrics, when on), in Jaeger's
//! model (processes, `tags` typed as `string`/`bool`/`int64`/`float64`/`binary`, references,
//! logs, times in microseconds).

use std::collections::BTreeMap;

use model::{KeyValue, Span, SpanKind, StatusCode, TraceId, Value};
use serde_json::{Value as Json_, json};
use store::StoreError;
use traceql::{
    Attribute, AttributeScope, BinaryOp, Field, Intrinsic, Pipeline, SpansetExpr, Static,
};
use views::{Context, Visibility};

use crate::find::{self, ChangeFields};
use crate::params::{go_duration_nanos, literal, logfmt_pairs};

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1500;
const DEFAULT_LOOKBACK_NANOS: u64 = 3600 * 1_000_000_000;

/// A trace search as `/api/traces` takes it.
#[derive(Debug)]
pub struct Search {
    pub query: traceql::Query,
    pub operation: Option<String>,
    pub limit: usize,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
}

/// Reads `/api/traces`' parameters: `service` (required), `operation`, `tags` (a JSON object
/// or logfmt), `minDuration`/`maxDuration` (Go durations, of a span), `limit`, `start`/`end`
/// (Unix microseconds) and `lookback` (`1h`, `2d`; `custom` when `start` is given).
pub fn parse_search(params: &[(String, String)], now_unix_nanos: u64) -> Result<Search, String> {
    let get =
        |key: &str| params.iter().find(|(k, v)| k == key && !v.is_empty()).map(|(_, v)| v.as_str());
    let service = get("service").ok_or("parameter `service` is required")?;
    let mut conditions = vec![equals(
        Field::Attribute(Attribute {
            scope: AttributeScope::Resource,
            name: "service.name".into(),
        }),
        Static::Str(service.to_owned()),
    )];
    let operation = get("operation").map(str::to_owned);
    if let Some(operation) = &operation {
        conditions.push(operation_is(operation));
    }
    for (key, op) in [("minDuration", BinaryOp::Ge), ("maxDuration", BinaryOp::Le)] {
        if let Some(text) = get(key) {
            let nanos = go_duration_nanos(key, text)?;
            conditions.push(Field::Binary(
                Box::new(Field::Intrinsic(Intrinsic::Duration)),
                op,
                Box::new(Field::Static(Static::Duration(nanos))),
            ));
        }
    }
    if let Some(tags) = get("tags") {
        for (key, value) in tag_pairs(tags)? {
            conditions.push(match (key.as_str(), value.as_str()) {
                ("error", "true") => equals(Field::Intrinsic(Intrinsic::Status), Static::Status(StatusCode::Error)),
                ("span.kind", kind) => match kind_named(kind) {
                    Some(kind) => equals(Field::Intrinsic(Intrinsic::Kind), Static::Kind(kind)),
                    None => return Err(format!("tag `span.kind` = `{kind}`: use server, client, producer, consumer or internal")),
                },
                _ => equals(
                    Field::Attribute(Attribute { scope: AttributeScope::Any, name: key.clone() }),
                    literal(&value),
                ),
            });
        }
    }
    let limit = match get("limit") {
        None => DEFAULT_LIMIT,
        Some(text) => {
            text.parse().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                format!("`limit` must be a number from 1 to {MAX_LIMIT}; got `{text}`")
            })?
        }
    };
    let micros = |key: &str| -> Result<Option<u64>, String> {
        get(key)
            .map(|text| {
                text.parse::<u64>()
                    .map(|us| us.saturating_mul(1000))
                    .map_err(|_| format!("`{key}` must be Unix microseconds; got `{text}`"))
            })
            .transpose()
    };
    let end = micros("end")?.unwrap_or(now_unix_nanos);
    let lookback = match get("lookback") {
        None | Some("custom") => DEFAULT_LOOKBACK_NANOS,
        Some(text) => views::parse_duration_nanos(text)
            .map_err(|_| format!("`lookback` must be a duration such as 1h or 2d; got `{text}`"))?,
    };
    let start = micros("start")?.unwrap_or_else(|| end.saturating_sub(lookback));
    if start >= end {
        return Err("`start` must be before `end`".into());
    }
    let condition = conditions
        .into_iter()
        .reduce(|a, b| Field::Binary(Box::new(a), BinaryOp::And, Box::new(b)));
    let pipeline = Pipeline { first: SpansetExpr::Filter(condition), stages: Vec::new() };
    // The canonical text reads back to the same query (property-tested in `traceql`).
    let query = traceql::parse(&pipeline.to_string()).map_err(|e| e.to_string())?;
    Ok(Search { query, operation, limit, start_unix_nanos: start, end_unix_nanos: end })
}

fn equals(field: Field, value: Static) -> Field {
    Field::Binary(Box::new(field), BinaryOp::Eq, Box::new(Field::Static(value)))
}

/// A span's operation as spanblame names it (and lists it under `/operations`): its
/// `http.route`, else its name.
fn operation_is(operation: &str) -> Field {
    let route =
        || Field::Attribute(Attribute { scope: AttributeScope::Span, name: "http.route".into() });
    let by_route = equals(route(), Static::Str(operation.to_owned()));
    let by_name = Field::Binary(
        Box::new(equals(route(), Static::Nil)),
        BinaryOp::And,
        Box::new(equals(Field::Intrinsic(Intrinsic::Name), Static::Str(operation.to_owned()))),
    );
    Field::Binary(Box::new(by_route), BinaryOp::Or, Box::new(by_name))
}

fn kind_named(kind: &str) -> Option<SpanKind> {
    Some(match kind {
        "server" => SpanKind::Server,
        "client" => SpanKind::Client,
        "producer" => SpanKind::Producer,
        "consumer" => SpanKind::Consumer,
        "internal" => SpanKind::Internal,
        _ => return None,
    })
}

/// `tags` as Jaeger's UI sends it (a JSON object of strings) or as logfmt.
fn tag_pairs(tags: &str) -> Result<Vec<(String, String)>, String> {
    if tags.trim_start().starts_with('{') {
        let object: BTreeMap<String, Json_> = serde_json::from_str(tags)
            .map_err(|e| format!("`tags` must be a JSON object of strings ({e})"))?;
        return Ok(object
            .into_iter()
            .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect());
    }
    logfmt_pairs(tags)
}

/// Jaeger's envelope: `{"data": …, "total", "limit", "offset", "errors"}`.
pub fn envelope(data: Json_, total: usize) -> Json_ {
    json!({"data": data, "total": total, "limit": 0, "offset": 0, "errors": null})
}

/// Jaeger's error envelope, which its UI shows.
pub fn error(code: u16, message: &str) -> Json_ {
    json!({"data": null, "total": 0, "limit": 0, "offset": 0, "errors": [{"code": code, "msg": message}]})
}

/// The newest traces with a span matching the search, whole, in Jaeger's model.
pub fn search(
    ctx: &Context,
    visibility: &Visibility,
    search: &Search,
) -> Result<Vec<Json_>, StoreError> {
    let mut ext = ChangeFields::new(ctx);
    let found = find::traces(
        ctx,
        visibility,
        &find::Find {
            whole_traces: true,
            ..find::Find::in_window(
                &search.query,
                search.start_unix_nanos,
                search.end_unix_nanos,
                search.limit,
            )
            .with_operation(search.operation.clone())
        },
        &mut ext,
    )?;
    Ok(found.traces.into_iter().map(|f| trace_view(visibility, f.spans)).collect())
}

/// A trace by id; `None` when the caller may see none of its spans.
pub fn trace(
    ctx: &Context,
    visibility: &Visibility,
    id: &TraceId,
) -> Result<Option<Json_>, StoreError> {
    let spans = ctx.store.trace(id)?;
    if !spans.iter().any(|s| views::traces::visible(visibility, s)) {
        return Ok(None);
    }
    Ok(Some(trace_view(visibility, spans)))
}

/// Services the caller may see.
pub fn services(ctx: &Context, visibility: &Visibility) -> Result<Vec<String>, StoreError> {
    Ok(ctx
        .store
        .services()?
        .into_iter()
        .filter(|s| visibility.allows_service(&s.name))
        .map(|s| s.name)
        .collect())
}

/// A service's operations with their span kinds (none when the caller may not see it).
pub fn operations(
    ctx: &Context,
    visibility: &Visibility,
    service: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    if !visibility.allows_service(service) {
        return Ok(Vec::new());
    }
    let mut operations: Vec<(String, String)> = ctx
        .store
        .services()?
        .into_iter()
        .filter(|s| s.name == service)
        .flat_map(|s| s.operations)
        .map(|o| (o.name, o.span_kind))
        .collect();
    operations.sort();
    operations.dedup();
    Ok(operations)
}

/// Jaeger's dependency links (`{"parent", "child", "callCount"}`) from the service graph's
/// edges since this server started; none when span metrics are off.
pub fn dependencies(ctx: &Context, visibility: &Visibility) -> Vec<Json_> {
    let Some(metrics) = &ctx.span_metrics else { return Vec::new() };
    let metrics = metrics.lock().unwrap_or_else(|p| p.into_inner());
    metrics
        .edge_totals(|service| visibility.allows_service(service))
        .into_iter()
        .map(|(edge, calls)| json!({"parent": edge.client, "child": edge.server, "callCount": calls}))
        .collect()
}

fn trace_view(visibility: &Visibility, spans: Vec<Span>) -> Json_ {
    let spans: Vec<Span> = spans
        .into_iter()
        .map(|s| if views::traces::visible(visibility, &s) { s } else { find::redacted(s) })
        .collect();
    // One process per distinct resource, numbered in order of first appearance.
    let mut processes: Vec<&model::Resource> = Vec::new();
    let mut views = Vec::with_capacity(spans.len());
    for span in &spans {
        let at = match processes.iter().position(|r| **r == *span.resource) {
            Some(at) => at,
            None => {
                processes.push(&span.resource);
                processes.len() - 1
            }
        };
        views.push(span_view(span, &format!("p{}", at + 1)));
    }
    let processes: serde_json::Map<String, Json_> = processes
        .iter()
        .enumerate()
        .map(|(i, resource)| {
            let service = resource
                .attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_str())
                .unwrap_or(model::UNKNOWN_SERVICE);
            let tags: Vec<Json_> =
                resource.attributes.iter().filter(|kv| kv.key != "service.name").map(tag).collect();
            (format!("p{}", i + 1), json!({"serviceName": service, "tags": tags}))
        })
        .collect();
    json!({
        "traceID": spans.first().map(|s| s.trace_id.to_hex()).unwrap_or_default(),
        "spans": views,
        "processes": processes,
        "warnings": null,
    })
}

fn micros(unix_nanos: u64) -> u64 {
    unix_nanos / 1000
}

fn span_view(span: &Span, process_id: &str) -> Json_ {
    let mut references: Vec<Json_> = Vec::new();
    if let Some(parent) = span.parent_span_id {
        references.push(json!({"refType": "CHILD_OF", "traceID": span.trace_id.to_hex(), "spanID": parent.to_hex()}));
    }
    references.extend(span.links.iter().map(|l| {
        json!({"refType": "FOLLOWS_FROM", "traceID": l.trace_id.to_hex(), "spanID": l.span_id.to_hex()})
    }));
    let mut tags: Vec<Json_> = span.attributes.iter().map(tag).collect();
    let text = |key: &str, value: &str| tag(&KeyValue::new(key, Value::String(value.to_owned())));
    if span.kind != SpanKind::Unspecified {
        tags.push(text("span.kind", span.kind.as_str()));
    }
    match span.status.code {
        StatusCode::Error => {
            tags.push(tag(&KeyValue::new("error", Value::Bool(true))));
            tags.push(text("otel.status_code", "ERROR"));
        }
        StatusCode::Ok => tags.push(text("otel.status_code", "OK")),
        StatusCode::Unset => {}
    }
    if !span.status.message.is_empty() {
        tags.push(text("otel.status_description", &span.status.message));
    }
    if !span.scope.name.is_empty() {
        tags.push(text("otel.scope.name", &span.scope.name));
    }
    if !span.scope.version.is_empty() {
        tags.push(text("otel.scope.version", &span.scope.version));
    }
    let logs: Vec<Json_> = span
        .events
        .iter()
        .map(|e| {
            let mut fields = vec![text("event", &e.name)];
            fields.extend(e.attributes.iter().map(tag));
            json!({"timestamp": micros(e.time_unix_nanos), "fields": fields})
        })
        .collect();
    json!({
        "traceID": span.trace_id.to_hex(),
        "spanID": span.span_id.to_hex(),
        "flags": span.flags & 0xff,
        "operationName": span.name,
        "references": references,
        "startTime": micros(span.start_time_unix_nanos),
        "duration": micros(span.duration_nanos()),
        "tags": tags,
        "logs": logs,
        "processID": process_id,
        "warnings": null,
    })
}

/// An attribute as a Jaeger tag; arrays and maps as their OTLP/JSON text.
fn tag(kv: &KeyValue) -> Json_ {
    let (kind, value) = match &kv.value {
        Value::String(s) => ("string", json!(s)),
        Value::Bool(b) => ("bool", json!(b)),
        Value::Int(n) => ("int64", json!(n)),
        Value::Double(x) => ("float64", json!(x)),
        Value::Bytes(b) => {
            ("binary", json!(b.iter().map(|byte| format!("{byte:02x}")).collect::<String>()))
        }
        other => {
            ("string", json!(serde_json::to_string(&otlp::any_value(other)).unwrap_or_default()))
        }
    };
    json!({"key": kv.key, "type": kind, "value": value})
}
