//! The statements the ClickHouse engine sends, built in one place: the engine runs them, and
//! the dialect test runs them on a current ClickHouse too (`chdb`), so both releases are
//! known to accept them.

use model::TraceId;

use crate::clickhouse::http::quote;
use crate::clickhouse::schema::{self, Layout, NO_TEXT, SERIES, status_code};
use crate::{SketchQuery, SpanQuery};

/// The WHERE clause of a search: the same filters as `SpanQuery::matches`.
pub(crate) fn search_filter(query: &SpanQuery) -> String {
    let list = |values: &[String]| values.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", ");
    let mut clauses = vec![format!(
        "start_unix_nanos >= {} AND start_unix_nanos < {}",
        query.start_unix_nanos, query.end_unix_nanos
    )];
    if let Some(min) = query.min_duration_nanos {
        clauses.push(format!("duration_nanos >= {min}"));
    }
    if let Some(max) = query.max_duration_nanos {
        clauses.push(format!("duration_nanos <= {max}"));
    }
    if let Some(code) = query.status {
        clauses.push(format!("status_code = {}", status_code(code)));
    }
    match &query.allowed_services {
        Some(allowed) if allowed.is_empty() => clauses.push("0".to_owned()),
        Some(allowed) => clauses.push(format!("service IN ({})", list(allowed))),
        None => {}
    }
    match &query.allowed_environments {
        Some(allowed) if allowed.is_empty() => clauses.push("0".to_owned()),
        Some(allowed) => {
            clauses.push(format!("environment != '' AND environment IN ({})", list(allowed)));
        }
        None => {}
    }
    if let Some(service) = &query.service {
        clauses.push(format!("service = {}", quote(service)));
    }
    if let Some(operation) = &query.operation {
        clauses.push(format!("(operation = {0} OR name = {0})", quote(operation)));
    }
    if let Some(environment) = &query.environment {
        clauses.push(format!("environment = {} AND environment != ''", quote(environment)));
    }
    if let Some(version) = &query.version {
        clauses.push(format!("version = {} AND version != ''", quote(version)));
    }
    for (key, wanted) in &query.attributes {
        if wanted == NO_TEXT {
            clauses.push("0".to_owned());
        } else {
            clauses.push(format!(
                "has(attr_keys, {0}) AND attr_values[indexOf(attr_keys, {0})] = {1}",
                quote(key),
                quote(wanted)
            ));
        }
    }
    clauses.join(" AND ")
}

pub(crate) fn unhex(trace_id: &TraceId) -> String {
    format!("unhex('{}')", trace_id.to_hex())
}

/// The services a trace has spans in, with each one's first and last span start.
pub(crate) fn trace_ranges(layout: &Layout<'_>, trace_id: &TraceId) -> String {
    format!(
        "SELECT service, min(first_start_unix_nanos), max(last_start_unix_nanos) FROM {} \
         WHERE trace_id = {} GROUP BY service FORMAT RowBinary",
        layout.table(&schema::TRACE_INDEX),
        unhex(trace_id)
    )
}

/// A trace's spans, read only from its services' time ranges (the primary key's prefix).
pub(crate) fn trace_spans(
    layout: &Layout<'_>,
    ranges: &[(String, u64, u64)],
    trace_id: &TraceId,
) -> String {
    let ranges: Vec<String> = ranges
        .iter()
        .map(|(service, first, last)| {
            format!(
                "(service = {} AND start_unix_nanos >= {first} AND start_unix_nanos <= {last})",
                quote(service)
            )
        })
        .collect();
    format!(
        "SELECT span FROM {} WHERE ({}) AND trace_id = {} FORMAT RowBinary",
        layout.table(&schema::SPANS),
        ranges.join(" OR "),
        unhex(trace_id)
    )
}

/// The newest `limit` traces with a span passing `filter`, newest first.
pub(crate) fn search_trace_ids(layout: &Layout<'_>, filter: &str, limit: usize) -> String {
    format!(
        "SELECT trace_id, max(start_unix_nanos) AS newest FROM {} WHERE {filter} \
         GROUP BY trace_id ORDER BY newest DESC, trace_id DESC LIMIT {limit} FORMAT RowBinary",
        layout.table(&schema::SPANS)
    )
}

/// The spans passing `filter` in the given traces.
pub(crate) fn search_spans(layout: &Layout<'_>, filter: &str, trace_ids: &[TraceId]) -> String {
    let ids = trace_ids.iter().map(unhex).collect::<Vec<_>>().join(", ");
    format!(
        "SELECT span FROM {} WHERE {filter} AND trace_id IN ({ids}) FORMAT RowBinary",
        layout.table(&schema::SPANS)
    )
}

/// The WHERE clause of a sketch read.
pub(crate) fn sketch_filter(query: &SketchQuery) -> String {
    let mut filter = format!(
        "service = {} AND unix_minute >= {} AND unix_minute < {}",
        quote(&query.service),
        query.from_unix_minute,
        query.to_unix_minute
    );
    if let Some(environment) = &query.environment {
        filter.push_str(&format!(" AND environment = {}", quote(environment)));
    }
    filter
}

/// Counts and summed latency buckets per series and minute.
pub(crate) fn sketch_rows(layout: &Layout<'_>, filter: &str) -> String {
    format!(
        "SELECT {SERIES}, sum(spans), sum(errors), \
         sumMap(latencyMap.bucket, latencyMap.count), sum(sampled) FROM {} WHERE {filter} \
         GROUP BY {SERIES} FORMAT RowBinary",
        layout.table(&schema::SKETCHES)
    )
}

/// Error counts per series, minute and error type.
pub(crate) fn sketch_error_rows(layout: &Layout<'_>, filter: &str) -> String {
    format!(
        "SELECT {SERIES}, error_type, sum(count) FROM {} WHERE {filter} \
         GROUP BY {SERIES}, error_type FORMAT RowBinary",
        layout.table(&schema::SKETCH_ERRORS)
    )
}

/// A node's partitions of one local table (`database.table`) with their bytes, as TSV.
pub(crate) fn partitions(local_table: &str) -> String {
    let (database, name) = local_table.split_once('.').unwrap_or(("", local_table));
    format!(
        "SELECT partition, sum(bytes_on_disk) FROM system.parts \
         WHERE database = {} AND table = {} AND active GROUP BY partition",
        quote(database),
        quote(name)
    )
}

pub(crate) fn drop_partition(local_table: &str, day: i64) -> String {
    format!("ALTER TABLE {local_table} DROP PARTITION {day}")
}
