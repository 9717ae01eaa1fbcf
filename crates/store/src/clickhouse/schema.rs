//! The ClickHouse schema: what each table holds, how it is ordered for spanblame's queries,
//! and how it is applied to one server or to every node of a cluster.
//!
//! The SQL stays inside what ClickHouse 18.16 (Debian's package) and current releases both
//! accept: integer nanoseconds instead of `DateTime64`, arrays instead of `Map`, no `TTL`
//! (retention drops whole partitions), no `CODEC`, no skipping indexes.
//!
//! - `spans`: one row per span, ordered by (service, start) for search; the whole span is in
//!   `span` (the store's own batch encoding, one span per batch), the rest are filter columns.
//! - `trace_index`: (trace id, service, first and last start) ordered by trace id, so a trace
//!   lookup reads a few index granules, then only its services' time ranges in `spans`.
//! - `sketches` and `sketch_errors`: `SummingMergeTree`s keyed by (service, environment,
//!   minute, operation, span kind, version [, error type]); ClickHouse adds the span and error
//!   counts and the latency buckets (`latencyMap`, a nested map the engine sums) as it merges.
//! - `schema_version`: the migrations applied on this node (never distributed).
//!
//! Every data table is partitioned by day (`intDiv(nanos, 86400e9)`, `intDiv(minute, 1440)`),
//! so the partition id is the day number since the epoch and retention drops whole days.
//! On a cluster the tables above are `*_local` on every node, and tables of the plain names
//! are `Distributed` over them (spans and the index sharded by trace id, sketches by series).

use model::StatusCode;

use crate::StoreError;
use crate::clickhouse::http::{Http, quote};

/// The newest schema this build knows; `schema_version` holds what a node has applied.
/// 1: the tables; 2: `sketches.sampled`, the spans seen behind the weighted counts.
pub const SCHEMA_VERSION: u32 = 2;

pub(crate) const NANOS_PER_DAY: u64 = 86_400 * 1_000_000_000;

/// A data table: its name, columns, engine and keys.
pub(crate) struct Table {
    pub(crate) name: &'static str,
    columns: &'static str,
    engine: &'static str,
    partition_by: &'static str,
    order_by: &'static str,
    /// With a cluster: the `Distributed` sharding key.
    sharding_key: &'static str,
}

pub(crate) const SPANS: Table = Table {
    name: "spans",
    columns: "trace_id FixedString(16), span_id FixedString(8), service String, \
              operation String, name String, environment String, version String, \
              span_kind String, start_unix_nanos UInt64, duration_nanos UInt64, \
              status_code UInt8, attr_keys Array(String), attr_values Array(String), \
              span String",
    engine: "MergeTree",
    partition_by: "intDiv(start_unix_nanos, 86400000000000)",
    order_by: "(service, start_unix_nanos)",
    sharding_key: "cityHash64(trace_id)",
};

pub(crate) const TRACE_INDEX: Table = Table {
    name: "trace_index",
    columns: "trace_id FixedString(16), service String, first_start_unix_nanos UInt64, \
              last_start_unix_nanos UInt64",
    engine: "MergeTree",
    partition_by: "intDiv(first_start_unix_nanos, 86400000000000)",
    order_by: "trace_id",
    sharding_key: "cityHash64(trace_id)",
};

pub(crate) const SKETCHES: Table = Table {
    name: "sketches",
    columns: "service String, environment String, unix_minute Int64, operation String, \
              span_kind String, version String, spans UInt64, errors UInt64, \
              latencyMap Nested(bucket Int32, count UInt64), sampled UInt64",
    engine: "SummingMergeTree",
    partition_by: "intDiv(unix_minute, 1440)",
    order_by: "(service, environment, unix_minute, operation, span_kind, version)",
    sharding_key: "cityHash64(service, operation)",
};

pub(crate) const SKETCH_ERRORS: Table = Table {
    name: "sketch_errors",
    columns: "service String, environment String, unix_minute Int64, operation String, \
              span_kind String, version String, error_type String, count UInt64",
    engine: "SummingMergeTree",
    partition_by: "intDiv(unix_minute, 1440)",
    order_by: "(service, environment, unix_minute, operation, span_kind, version, error_type)",
    sharding_key: "cityHash64(service, operation)",
};

pub(crate) const TABLES: [&Table; 4] = [&SPANS, &TRACE_INDEX, &SKETCHES, &SKETCH_ERRORS];

/// The series columns and the minute, as both sketch readers select and group them.
pub(crate) const SERIES: &str = "service, environment, operation, span_kind, version, unix_minute";

/// Where the schema goes: one server, or every node of a cluster.
pub(crate) struct Layout<'a> {
    pub(crate) database: &'a str,
    pub(crate) cluster: Option<&'a str>,
}

impl Layout<'_> {
    /// The table rows are stored in on a node (`*_local` on a cluster).
    pub(crate) fn local(&self, table: &Table) -> String {
        match self.cluster {
            Some(_) => format!("{}.{}_local", self.database, table.name),
            None => format!("{}.{}", self.database, table.name),
        }
    }

    /// The table queries and inserts name (the `Distributed` one on a cluster).
    pub(crate) fn table(&self, table: &Table) -> String {
        format!("{}.{}", self.database, table.name)
    }

    /// The sketch tables of a node: the local one and, on a cluster, its `Distributed` one.
    pub(crate) fn sketch_tables(&self) -> Vec<String> {
        let mut tables = vec![self.local(&SKETCHES)];
        if self.cluster.is_some() {
            tables.push(self.table(&SKETCHES));
        }
        tables
    }

    /// The statements that make a node's tables as this build has them, in order; each can
    /// run again (a node at schema 1 then gets `sketches.sampled` from [`migrate_node`]).
    pub(crate) fn statements(&self) -> Vec<String> {
        let mut out = vec![format!("CREATE DATABASE IF NOT EXISTS {}", self.database)];
        for table in TABLES {
            out.push(format!(
                "CREATE TABLE IF NOT EXISTS {} ({}) ENGINE = {} PARTITION BY {} ORDER BY {}",
                self.local(table),
                table.columns,
                table.engine,
                table.partition_by,
                table.order_by
            ));
            if let Some(cluster) = self.cluster {
                out.push(format!(
                    "CREATE TABLE IF NOT EXISTS {} AS {} ENGINE = Distributed({}, {}, {}_local, {})",
                    self.table(table),
                    self.local(table),
                    cluster,
                    self.database,
                    table.name,
                    table.sharding_key
                ));
            }
        }
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {}.schema_version (version UInt32, \
             applied_unix_secs UInt64) ENGINE = TinyLog",
            self.database
        ));
        out
    }
}

/// The schema version a node has applied (0: none).
pub(crate) fn node_version(http: &Http, url: &str, database: &str) -> Result<u32, StoreError> {
    let exists = http.query(
        url,
        &format!(
            "SELECT count() FROM system.tables WHERE database = {} AND name = 'schema_version'",
            quote(database)
        ),
        &[],
    )?;
    if String::from_utf8_lossy(&exists).trim() == "0" {
        return Ok(0);
    }
    let answer =
        http.query(url, &format!("SELECT max(version) FROM {database}.schema_version"), &[])?;
    let text = String::from_utf8_lossy(&answer);
    text.trim().parse().map_err(|_| StoreError::Engine {
        engine: "ClickHouse",
        url: url.to_owned(),
        reason: format!("`{database}.schema_version` holds `{}`, not a version", text.trim()),
    })
}

/// Brings one node to [`SCHEMA_VERSION`]; returns the version it had. Refuses a node whose
/// schema is newer than this build.
pub(crate) fn migrate_node(
    http: &Http,
    url: &str,
    layout: &Layout<'_>,
    now_unix_secs: u64,
) -> Result<u32, StoreError> {
    let found = node_version(http, url, layout.database)?;
    if found > SCHEMA_VERSION {
        return Err(newer_schema(url, layout.database, found));
    }
    if found < SCHEMA_VERSION {
        for statement in layout.statements() {
            http.query(url, &statement, &[])?;
        }
        // 2: tables made by 1 lack `sketches.sampled`; their rows saw every span they count.
        for table in layout.sketch_tables() {
            let (database, name) = table.split_once('.').unwrap_or(("", &table));
            let has = http.query(
                url,
                &format!(
                    "SELECT count() FROM system.columns WHERE database = {} AND table = {} \
                     AND name = 'sampled'",
                    quote(database),
                    quote(name)
                ),
                &[],
            )?;
            if String::from_utf8_lossy(&has).trim() == "0" {
                let alter = format!("ALTER TABLE {table} ADD COLUMN sampled UInt64 DEFAULT spans");
                http.query(url, &alter, &[])?;
            }
        }
        http.query(
            url,
            &format!(
                "INSERT INTO {}.schema_version VALUES ({SCHEMA_VERSION}, {now_unix_secs})",
                layout.database
            ),
            &[],
        )?;
    }
    Ok(found)
}

pub(crate) fn newer_schema(url: &str, database: &str, found: u32) -> StoreError {
    StoreError::Engine {
        engine: "ClickHouse",
        url: url.to_owned(),
        reason: format!(
            "database `{database}` has schema version {found}, newer than this build's \
             {SCHEMA_VERSION}: upgrade spanblame"
        ),
    }
}

/// A span's attribute value as the search compares it; attributes with no text form get a
/// value no search can ask for, so they never match (as in `SpanQuery::matches`).
pub(crate) const NO_TEXT: &str = "\0";

pub(crate) fn status_code(code: StatusCode) -> u8 {
    match code {
        StatusCode::Unset => 0,
        StatusCode::Ok => 1,
        StatusCode::Error => 2,
    }
}
