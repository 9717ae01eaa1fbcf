//! Traces by id, trace search and the service catalog, as the JSON API v1 shows them.
//! Views are built by hand from model types (model types are not `Serialize`) into the
//! typed shapes of `shapes::traces`.

use model::{KeyValue, Span, TraceId, Value, VersionIdentity};
use serde_json::{Map, Value as Json_};
use store::{SpanQuery, TraceSummary};

use crate::changes::ChangeResolver;
use crate::{Context, Invalid, Visibility, parse_time, rfc3339};
use shapes::{
    ChangeJ, CodeJ, EventJ, LinkJ, MatchedSpanJ, OperationJ, ResourceJ, RootJ, ScopeJ, ServiceJ,
    SpanDetailJ, SpanJ, StatusJ, TraceHitJ, VersionJ, WholeTraceJ,
};

const DEFAULT_SEARCH_LIMIT: usize = 20;
const MAX_SEARCH_LIMIT: usize = 1000;
const DEFAULT_LOOKBACK_NANOS: u64 = 24 * 3600 * 1_000_000_000;

/// The spans of a trace as the caller may see them: their own with change context, other
/// teams' as redacted stubs; nothing when none of the spans is theirs.
pub fn trace_spans(
    ctx: &Context,
    visibility: &Visibility,
    id: &TraceId,
    blame_lines: bool,
) -> Result<Vec<SpanJ>, store::StoreError> {
    let spans = ctx.store.trace(id)?;
    // A trace with none of the caller's spans does not exist for them.
    if !spans.iter().any(|span| visible(visibility, span)) {
        return Ok(Vec::new());
    }
    let mut resolver =
        if blame_lines { ChangeResolver::with_blame_lines(ctx) } else { ChangeResolver::new(ctx) };
    spans
        .iter()
        .map(|span| {
            if !visible(visibility, span) {
                return Ok(redacted_view(span));
            }
            let identity = span.identity();
            let change = resolver.change(
                &identity.service,
                identity.version.as_deref(),
                identity.commit.as_deref(),
                &identity.code,
            )?;
            Ok(span_view(span, identity, change))
        })
        .collect()
}

/// Traces with spans matching `query` that the caller may see, newest first. Spans outside
/// the caller's reach never match, so neither results nor counts show them.
pub fn search(
    ctx: &Context,
    visibility: &Visibility,
    mut query: SpanQuery,
) -> Result<Vec<TraceHitJ>, store::StoreError> {
    (query.allowed_services, query.allowed_environments) = crate::reach(visibility);
    let matches = ctx.store.search(&query)?;
    matches
        .iter()
        .map(|m| {
            // The trace as a whole: its root, start, duration and counts.
            let summary = match &m.summary {
                Some(summary) => Some(summary.clone()),
                None => TraceSummary::of(&ctx.store.trace(&m.trace_id)?),
            };
            let whole = summary.map(|summary| {
                let root = &summary.root;
                // Another team's root names its service only, as a redacted span does.
                let own = visible(visibility, root);
                WholeTraceJ {
                    root: RootJ {
                        service: root.service_name().into(),
                        found: summary.root_found,
                        operation: own.then(|| root.operation().into()),
                        redacted: !own,
                    },
                    start_time: rfc3339(summary.start_unix_nanos),
                    duration_ms: summary.duration_nanos() as f64 / 1e6,
                    span_count: summary.span_count,
                    service_count: summary.service_count,
                    error_count: summary.error_count,
                }
            });
            Ok(TraceHitJ {
                trace_id: m.trace_id.to_hex(),
                newest_match_time: rfc3339(m.newest_start_unix_nanos()),
                matched_spans: m.spans.iter().map(span_summary).collect(),
                whole,
            })
        })
        .collect()
}

pub fn parse_search(
    params: &[(String, String)],
    now_unix_nanos: u64,
) -> Result<SpanQuery, Invalid> {
    let mut query = SpanQuery { limit: DEFAULT_SEARCH_LIMIT, ..SpanQuery::default() };
    let (mut start, mut end) = (None, None);
    for (key, value) in params {
        let millis = |value: &str| -> Result<u64, Invalid> {
            let ms: f64 = value.parse().map_err(|_| {
                Invalid::new(format!("`{key}` must be a number of milliseconds, got `{value}`"))
            })?;
            if !ms.is_finite() || ms < 0.0 {
                return Err(Invalid::new(format!("`{key}` must be zero or more, got `{value}`")));
            }
            Ok((ms * 1e6) as u64)
        };
        match key.as_str() {
            "service" => query.service = Some(value.clone()),
            "operation" => query.operation = Some(value.clone()),
            "environment" => query.environment = Some(value.clone()),
            "version" => query.version = Some(value.clone()),
            "min_duration_ms" => query.min_duration_nanos = Some(millis(value)?),
            "max_duration_ms" => query.max_duration_nanos = Some(millis(value)?),
            "status" => {
                query.status = Some(model::StatusCode::parse(value).ok_or_else(|| {
                    Invalid::new(format!(
                        "`status` must be `ok`, `error` or `unset`, got `{value}`"
                    ))
                })?)
            }
            "start" => start = Some(parse_time(key, value)?),
            "end" => end = Some(parse_time(key, value)?),
            "limit" => {
                query.limit =
                    value.parse().ok().filter(|n| (1..=MAX_SEARCH_LIMIT).contains(n)).ok_or_else(
                        || {
                            Invalid::new(format!(
                                "`limit` must be 1 to {MAX_SEARCH_LIMIT}, got `{value}`"
                            ))
                        },
                    )?
            }
            other => match other.strip_prefix("attr.") {
                Some(attribute) if !attribute.is_empty() => {
                    query.attributes.push((attribute.to_owned(), value.clone()))
                }
                _ => {
                    return Err(Invalid::new(format!(
                        "unknown search parameter `{other}`; use service, operation, environment, version, min_duration_ms, max_duration_ms, status, attr.<key>, start, end or limit"
                    )));
                }
            },
        }
    }
    query.end_unix_nanos = end.unwrap_or(u64::MAX);
    query.start_unix_nanos = start
        .unwrap_or_else(|| end.unwrap_or(now_unix_nanos).saturating_sub(DEFAULT_LOOKBACK_NANOS));
    if query.start_unix_nanos >= query.end_unix_nanos {
        return Err(Invalid::new("`start` must be before `end`"));
    }
    Ok(query)
}

/// The services, operations and versions the caller may see.
pub fn services(
    ctx: &Context,
    visibility: &Visibility,
) -> Result<Vec<ServiceJ>, store::StoreError> {
    let services = ctx.store.services()?;
    Ok(services
        .iter()
        .filter(|s| visibility.allows_service(&s.name))
        .map(|s| {
            let versions: Vec<&store::VersionSummary> = s
                .versions
                .iter()
                .filter(|v| visibility.allows(&s.name, v.environment.as_deref()))
                .collect();
            let mut environments: Vec<String> =
                versions.iter().filter_map(|v| v.environment.clone()).collect();
            environments.dedup();
            ServiceJ {
                name: s.name.clone(),
                environments,
                operations: s
                    .operations
                    .iter()
                    .map(|o| OperationJ {
                        name: o.name.clone(),
                        span_kind: o.span_kind.clone(),
                        first_seen: rfc3339(o.first_seen_unix_nanos),
                        last_seen: rfc3339(o.last_seen_unix_nanos),
                        span_count: o.num_spans,
                    })
                    .collect(),
                versions: versions
                    .iter()
                    .map(|v| VersionJ {
                        version: v.version.clone(),
                        environment: v.environment.clone(),
                        first_seen: rfc3339(v.first_seen_unix_nanos),
                        last_seen: rfc3339(v.last_seen_unix_nanos),
                        span_count: v.num_spans,
                    })
                    .collect(),
            }
        })
        .collect())
}

fn duration_ms(span: &Span) -> f64 {
    span.duration_nanos() as f64 / 1e6
}

fn span_summary(span: &Span) -> MatchedSpanJ {
    MatchedSpanJ {
        span_id: span.span_id.to_hex(),
        service: span.service_name().into(),
        operation: span.operation().into(),
        name: span.name.clone(),
        start_time: rfc3339(span.start_time_unix_nanos),
        duration_ms: duration_ms(span),
        status: span.status.code.as_str().into(),
    }
}

/// Whether the caller may see a span: its service (and environment) is in their reach.
pub fn visible(visibility: &Visibility, span: &Span) -> bool {
    visibility.allows(span.service_name(), span.environment())
}

/// Another team's span in a shared trace: where it sits and how long it took, nothing else
/// (no name, attributes, events, links, resource or change context).
fn redacted_view(span: &Span) -> SpanJ {
    SpanJ { redacted: true, ..placed(span) }
}

/// Where a span sits and how long it took: what anyone who sees the trace sees of it.
fn placed(span: &Span) -> SpanJ {
    SpanJ {
        redacted: false,
        trace_id: span.trace_id.to_hex(),
        span_id: span.span_id.to_hex(),
        parent_span_id: span.parent_span_id.map(|p| p.to_hex()),
        service: span.service_name().into(),
        start_time: rfc3339(span.start_time_unix_nanos),
        end_time: rfc3339(span.end_time_unix_nanos),
        start_time_unix_nanos: span.start_time_unix_nanos.to_string(),
        duration_ms: duration_ms(span),
        status: StatusJ { code: span.status.code.as_str().into(), message: None },
        detail: None,
    }
}

fn span_view(span: &Span, identity: VersionIdentity, change: ChangeJ) -> SpanJ {
    let code = CodeJ {
        file_path: identity.code.file_path,
        function_name: identity.code.function_name,
        line_number: identity.code.line_number,
        stacktrace: identity.code.stacktrace,
    };
    let placed = placed(span);
    SpanJ {
        service: identity.service,
        status: StatusJ { message: Some(span.status.message.clone()), ..placed.status },
        detail: Some(SpanDetailJ {
            trace_state: span.trace_state.clone(),
            flags: span.flags,
            name: span.name.clone(),
            operation: span.operation().into(),
            kind: span.kind.as_str().into(),
            environment: identity.environment,
            version: identity.version,
            commit: identity.commit,
            repository: identity.repository,
            code,
            attributes: attributes(&span.attributes),
            dropped_attributes_count: span.dropped_attributes_count,
            events: span
                .events
                .iter()
                .map(|e| EventJ {
                    time: rfc3339(e.time_unix_nanos),
                    name: e.name.clone(),
                    attributes: attributes(&e.attributes),
                    dropped_attributes_count: e.dropped_attributes_count,
                })
                .collect(),
            dropped_events_count: span.dropped_events_count,
            links: span
                .links
                .iter()
                .map(|l| LinkJ {
                    trace_id: l.trace_id.to_hex(),
                    span_id: l.span_id.to_hex(),
                    trace_state: l.trace_state.clone(),
                    flags: l.flags,
                    attributes: attributes(&l.attributes),
                    dropped_attributes_count: l.dropped_attributes_count,
                })
                .collect(),
            dropped_links_count: span.dropped_links_count,
            resource: ResourceJ {
                attributes: attributes(&span.resource.attributes),
                dropped_attributes_count: span.resource.dropped_attributes_count,
                schema_url: span.resource.schema_url.clone(),
            },
            scope: ScopeJ {
                name: span.scope.name.clone(),
                version: span.scope.version.clone(),
                attributes: attributes(&span.scope.attributes),
                schema_url: span.scope.schema_url.clone(),
            },
            change,
        }),
        ..placed
    }
}

/// Attributes as a JSON object. Bytes become base64 text; arrays and key-value lists nest.
fn attributes(kvs: &[KeyValue]) -> Map<String, Json_> {
    kvs.iter().map(|kv| (kv.key.clone(), value(&kv.value))).collect()
}

fn value(v: &Value) -> Json_ {
    match v {
        Value::String(s) => s.clone().into(),
        Value::Bool(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::Double(d) => serde_json::Number::from_f64(*d).map_or(Json_::Null, Json_::Number),
        Value::Bytes(b) => base64(b).into(),
        Value::Array(values) => Json_::Array(values.iter().map(value).collect()),
        Value::KvList(kvs) => Json_::Object(attributes(kvs)),
        Value::Empty => Json_::Null,
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0, 1, 2]), "AAEC");
    }

    #[test]
    fn search_parameters_are_validated_with_clear_messages() {
        let params = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let query = parse_search(
            &params(&[
                ("service", "checkout"),
                ("min_duration_ms", "1.5"),
                ("attr.http.route", "/cart"),
                ("limit", "5"),
            ]),
            10_000_000_000_000,
        )
        .unwrap();
        assert_eq!(query.min_duration_nanos, Some(1_500_000));
        assert_eq!(query.attributes, vec![("http.route".to_string(), "/cart".to_string())]);
        assert_eq!(query.limit, 5);
        let error = |pairs: &[(&str, &str)]| parse_search(&params(pairs), 0).unwrap_err().message;
        assert!(error(&[("limit", "0")]).contains("`limit` must be 1 to 1000"));
        assert!(error(&[("status", "bad")]).contains("`status` must be"));
        assert!(error(&[("start", "yesterday")]).contains("RFC 3339"));
        assert!(error(&[("colour", "red")]).contains("unknown search parameter `colour`"));
    }
}
