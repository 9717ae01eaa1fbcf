//! The scale-out span engine: spans, the trace-id index and sketches in ClickHouse, through
//! its HTTP interface (one server, or a cluster behind `Distributed` tables).
//!
//! An append is acknowledged once ClickHouse accepted every row: the spans and the index
//! first, the sketches last. A failure answers "unavailable", and the exporter's retry may
//! store a span twice, which every read removes (by span id); the sketches are written only
//! after the spans, so a retried batch is counted once unless the failure came after the
//! sketches were in. On a cluster inserts wait for every shard (`insert_distributed_sync`).
//!
//! The catalog (services, versions, operations) stays in the metadata database, as with the
//! embedded engine: gathered per append, written on `maintain`, and at once when a batch
//! names a version this process has not written yet, so an inferred deploy never waits for
//! the next tick. A metadata outage does not fail appends: the catalog waits in memory.

mod http;
mod queries;
mod rowbinary;
mod schema;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use analysis::{LatencySketch, WindowStats};
use model::{Span, TraceId};

use crate::clickhouse::http::{Http, is_identifier};
use crate::clickhouse::rowbinary::{Malformed, RowReader, RowWriter};
use crate::clickhouse::schema::{Layout, NANOS_PER_DAY, NO_TEXT, Table, status_code};
use crate::metadata::{Metadata, PendingCatalog};
use crate::sketches::SketchDelta;
use crate::{
    RetentionReport, RollUpReport, SeriesKey, SketchQuery, SketchRow, SpanEngine, SpanQuery,
    StoreError, StoreStats, TraceMatch, codec,
};

pub use crate::clickhouse::schema::SCHEMA_VERSION;

/// How to reach ClickHouse.
#[derive(Clone)]
pub struct ClickHouseOptions {
    /// The HTTP interface queries and inserts go to, e.g. `http://clickhouse:8123`.
    pub url: String,
    /// The database spanblame's tables live in (created when missing).
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// A cluster from the servers' `remote_servers`: tables become `Distributed` over
    /// `*_local` tables on every node.
    pub cluster: Option<String>,
    /// With a cluster, every node's HTTP URL: the schema is applied and old partitions are
    /// dropped on each (`ON CLUSTER` would need ZooKeeper). Empty: only `url`.
    pub nodes: Vec<String>,
    /// The longest one request may take.
    pub timeout: Duration,
}

impl std::fmt::Debug for ClickHouseOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseOptions")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("cluster", &self.cluster)
            .field("nodes", &self.nodes)
            .finish()
    }
}

impl ClickHouseOptions {
    /// One server at `url`, database `database`, no credentials, a 30 s timeout.
    pub fn new(url: &str, database: &str) -> ClickHouseOptions {
        ClickHouseOptions {
            url: url.trim_end_matches('/').to_owned(),
            database: database.to_owned(),
            user: None,
            password: None,
            cluster: None,
            nodes: Vec::new(),
            timeout: Duration::from_secs(30),
        }
    }

    fn layout(&self) -> Layout<'_> {
        Layout { database: &self.database, cluster: self.cluster.as_deref() }
    }

    /// The nodes the schema and retention go to.
    fn node_urls(&self) -> Vec<&str> {
        if self.nodes.is_empty() {
            vec![self.url.as_str()]
        } else {
            self.nodes.iter().map(|n| n.trim_end_matches('/')).collect()
        }
    }

    fn check_names(&self) -> Result<(), StoreError> {
        let invalid = |reason: String| StoreError::Engine {
            engine: "ClickHouse",
            url: self.url.clone(),
            reason,
        };
        if !is_identifier(&self.database) {
            return Err(invalid(format!(
                "database name `{}` must be letters, digits and `_`",
                self.database
            )));
        }
        if let Some(cluster) = &self.cluster
            && !is_identifier(cluster)
        {
            return Err(invalid(format!(
                "cluster name `{cluster}` must be letters, digits and `_`"
            )));
        }
        if self.cluster.is_none() && !self.nodes.is_empty() {
            return Err(invalid("nodes are listed without a cluster name".to_owned()));
        }
        Ok(())
    }
}

/// Checks the names in `options` without connecting (for configuration checks).
pub fn validate(options: &ClickHouseOptions) -> Result<(), StoreError> {
    options.check_names()
}

/// One node's state, as `check` and `migrate` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSchema {
    pub url: String,
    /// What `SELECT version()` answers.
    pub server_version: String,
    /// The spanblame schema version applied there (0: none yet).
    pub schema_version: u32,
}

/// Checks the names in `options` and builds the client every request goes through.
fn connect(options: &ClickHouseOptions) -> Result<Http, StoreError> {
    options.check_names()?;
    Http::new(options.user.clone(), options.password.clone(), options.timeout)
}

/// Connects to every node and reads its server and schema versions, changing nothing.
pub fn check(options: &ClickHouseOptions) -> Result<Vec<NodeSchema>, StoreError> {
    let http = connect(options)?;
    options
        .node_urls()
        .into_iter()
        .map(|url| {
            let server_version = server_version(&http, url)?;
            let schema_version = schema::node_version(&http, url, &options.database)?;
            Ok(NodeSchema { url: url.to_owned(), server_version, schema_version })
        })
        .collect()
}

/// Brings every node's schema to [`SCHEMA_VERSION`] (idempotent); returns each node's state
/// as it was before.
pub fn migrate(options: &ClickHouseOptions) -> Result<Vec<NodeSchema>, StoreError> {
    migrate_nodes(&connect(options)?, options)
}

fn migrate_nodes(http: &Http, options: &ClickHouseOptions) -> Result<Vec<NodeSchema>, StoreError> {
    let now_unix_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    options
        .node_urls()
        .into_iter()
        .map(|url| {
            let server_version = server_version(http, url)?;
            let schema_version = schema::migrate_node(http, url, &options.layout(), now_unix_secs)?;
            Ok(NodeSchema { url: url.to_owned(), server_version, schema_version })
        })
        .collect()
}

fn server_version(http: &Http, url: &str) -> Result<String, StoreError> {
    let answer = http.query(url, "SELECT version()", &[])?;
    Ok(String::from_utf8_lossy(&answer).trim().to_owned())
}

pub(crate) struct ClickHouse {
    http: Http,
    options: ClickHouseOptions,
    metadata: Arc<Metadata>,
    /// Catalog updates not yet in the metadata.
    catalog: PendingCatalog,
    /// Whether the last request reached ClickHouse.
    reachable: AtomicBool,
}

impl ClickHouse {
    /// Connects, applies the schema where it is missing, and refuses a newer schema.
    pub(crate) fn open(
        options: ClickHouseOptions,
        metadata: Arc<Metadata>,
    ) -> Result<ClickHouse, StoreError> {
        let http = connect(&options)?;
        migrate_nodes(&http, &options)?;
        Ok(ClickHouse {
            http,
            options,
            metadata,
            catalog: PendingCatalog::default(),
            reachable: AtomicBool::new(true),
        })
    }

    fn table(&self, table: &Table) -> String {
        self.options.layout().table(table)
    }

    /// Notes whether ClickHouse answered, for `is_healthy`.
    fn observe<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        let unavailable = matches!(result, Err(StoreError::Unavailable { .. }));
        self.reachable.store(!unavailable, Ordering::Relaxed);
        result
    }

    fn query(&self, sql: &str) -> Result<Vec<u8>, StoreError> {
        self.observe(self.http.query(&self.options.url, sql, &[]))
    }

    fn insert(&self, table: &Table, rows: RowWriter) -> Result<(), StoreError> {
        if rows.bytes.is_empty() {
            return Ok(());
        }
        let settings: &[(&str, &str)] = match self.options.cluster {
            Some(_) => &[("insert_distributed_sync", "1")],
            None => &[],
        };
        self.observe(self.http.insert(&self.options.url, &self.table(table), &rows.bytes, settings))
    }

    fn malformed(&self, e: Malformed) -> StoreError {
        StoreError::Engine {
            engine: "ClickHouse",
            url: self.options.url.clone(),
            reason: e.to_string(),
        }
    }

    /// Decodes `span` blobs from a `SELECT span ... FORMAT RowBinary` answer.
    fn read_spans(&self, answer: &[u8], out: &mut Vec<Span>) -> Result<(), StoreError> {
        let mut reader = RowReader::new(answer);
        while !reader.is_empty() {
            let blob = reader.bytes().map_err(|e| self.malformed(e))?;
            let spans = codec::decode(blob).map_err(|e| StoreError::Engine {
                engine: "ClickHouse",
                url: self.options.url.clone(),
                reason: format!("a stored span does not decode: {e}"),
            })?;
            out.extend(spans);
        }
        Ok(())
    }

    /// Adds a batch to the pending catalog, writing it now when it names a new version.
    /// Gathers the batch's catalog entries; a new version is written at once. The spans are
    /// stored by then, so a metadata database that cannot take the write (PostgreSQL down)
    /// does not fail the append: the entries stay pending for the next maintenance tick.
    fn note(&self, spans: &[Span]) {
        if self.catalog.note(spans)
            && let Err(e) = self.flush_catalog()
        {
            tracing::warn!(error = %e, "the catalog stays pending until the metadata database answers");
        }
    }

    /// Drops the partitions of `tables` whose whole day is before `cutoff_day` on every node,
    /// then (with a budget) the oldest days until the rest fit; with a budget smaller than a
    /// day, the current day goes too (unlike the embedded head, which is never deleted).
    fn drop_days(
        &self,
        tables: &[&Table],
        cutoff_day: i64,
        budget_bytes: Option<u64>,
    ) -> Result<RetentionReport, StoreError> {
        let layout = self.options.layout();
        // day -> (bytes, [(node, table)]) over every node and table.
        let mut days: BTreeMap<i64, (u64, Vec<(String, String)>)> = BTreeMap::new();
        for url in self.options.node_urls() {
            for table in tables {
                let local = layout.local(table);
                let answer =
                    self.observe(self.http.query(url, &queries::partitions(&local), &[]))?;
                for line in String::from_utf8_lossy(&answer).lines() {
                    let mut fields = line.split('\t');
                    let (Some(Ok(day)), Some(Ok(bytes))) = (
                        fields.next().map(str::parse::<i64>),
                        fields.next().map(str::parse::<u64>),
                    ) else {
                        continue;
                    };
                    let entry = days.entry(day).or_default();
                    entry.0 += bytes;
                    entry.1.push((url.to_owned(), local.clone()));
                }
            }
        }
        let mut total: u64 = days.values().map(|(bytes, _)| bytes).sum();
        let mut report = RetentionReport::default();
        for (day, (bytes, places)) in days {
            let expired = day < cutoff_day;
            let over_budget = budget_bytes.is_some_and(|budget| total > budget);
            if !expired && !over_budget {
                break;
            }
            for (url, table) in places {
                self.observe(self.http.query(&url, &queries::drop_partition(&table, day), &[]))?;
                report.deleted_blocks += 1;
            }
            report.deleted_bytes += bytes;
            total -= bytes;
            tracing::info!(day, bytes, expired, "retention dropped a day of ClickHouse partitions");
        }
        Ok(report)
    }
}

/// The rows of one batch: spans, the trace index, and its sketches.
fn encode_batch(spans: &[Span]) -> (RowWriter, RowWriter, RowWriter, RowWriter) {
    let mut rows = RowWriter::default();
    // (trace, service) -> (first start, last start)
    let mut traces: HashMap<(TraceId, &str), (u64, u64)> = HashMap::new();
    for span in spans {
        let start = span.start_time_unix_nanos;
        traces
            .entry((span.trace_id, span.service_name()))
            .and_modify(|(first, last)| {
                *first = (*first).min(start);
                *last = (*last).max(start);
            })
            .or_insert((start, start));
        rows.fixed(span.trace_id.as_bytes());
        rows.fixed(span.span_id.as_bytes());
        rows.string(span.service_name().as_bytes());
        rows.string(span.operation().as_bytes());
        rows.string(span.name.as_bytes());
        rows.string(span.environment().unwrap_or("").as_bytes());
        rows.string(span.version().unwrap_or("").as_bytes());
        rows.string(span.kind.as_str().as_bytes());
        rows.u64(start);
        rows.u64(span.duration_nanos());
        rows.u8(status_code(span.status.code));
        let attributes: Vec<(&str, String)> = span
            .attributes
            .iter()
            .chain(&span.resource.attributes)
            .map(|kv| (kv.key.as_str(), kv.value.to_text().unwrap_or_else(|| NO_TEXT.to_owned())))
            .collect();
        rows.len(attributes.len());
        for (key, _) in &attributes {
            rows.string(key.as_bytes());
        }
        rows.len(attributes.len());
        for (_, value) in &attributes {
            rows.string(value.as_bytes());
        }
        rows.string(&codec::encode(std::slice::from_ref(span)));
    }

    let mut index = RowWriter::default();
    for ((trace_id, service), (first, last)) in traces {
        index.fixed(trace_id.as_bytes());
        index.string(service.as_bytes());
        index.u64(first);
        index.u64(last);
    }

    let mut sketches = RowWriter::default();
    let mut errors = RowWriter::default();
    for ((series, minute), stats) in SketchDelta::of_spans(spans).minutes {
        let series_columns = |w: &mut RowWriter| {
            w.string(series.service.as_bytes());
            w.string(series.environment.as_bytes());
            w.i64(minute);
            w.string(series.operation.as_bytes());
            w.string(series.span_kind.as_bytes());
            w.string(series.version.as_bytes());
        };
        series_columns(&mut sketches);
        sketches.u64(stats.spans);
        sketches.u64(stats.errors);
        let buckets: Vec<(i32, u64)> = stats.latency.indexed_counts().collect();
        sketches.len(buckets.len());
        for (bucket, _) in &buckets {
            sketches.i32(*bucket);
        }
        sketches.len(buckets.len());
        for (_, count) in &buckets {
            sketches.u64(*count);
        }
        sketches.u64(stats.sample_size());
        for (error_type, count) in &stats.error_types {
            series_columns(&mut errors);
            errors.string(error_type.as_bytes());
            errors.u64(*count);
        }
    }
    (rows, index, sketches, errors)
}

/// Sorts by start and keeps one copy of each span id.
fn dedup_by_start(spans: &mut Vec<Span>) {
    spans.sort_by_key(|s| (s.start_time_unix_nanos, *s.span_id.as_bytes()));
    let mut seen = HashSet::new();
    spans.retain(|s| seen.insert(*s.span_id.as_bytes()));
}

impl SpanEngine for ClickHouse {
    fn append(&self, spans: Vec<Span>) -> Result<(), StoreError> {
        let (rows, index, sketches, errors) = encode_batch(&spans);
        self.insert(&schema::SPANS, rows)?;
        self.insert(&schema::TRACE_INDEX, index)?;
        self.insert(&schema::SKETCHES, sketches)?;
        self.insert(&schema::SKETCH_ERRORS, errors)?;
        self.note(&spans);
        Ok(())
    }

    fn trace(&self, trace_id: &TraceId) -> Result<Vec<Span>, StoreError> {
        let layout = self.options.layout();
        let answer = self.query(&queries::trace_ranges(&layout, trace_id))?;
        let mut ranges = Vec::new();
        let mut reader = RowReader::new(&answer);
        while !reader.is_empty() {
            let read = |r: &mut RowReader<'_>| -> Result<(String, u64, u64), Malformed> {
                Ok((r.string()?, r.u64()?, r.u64()?))
            };
            ranges.push(read(&mut reader).map_err(|e| self.malformed(e))?);
        }
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        let answer = self.query(&queries::trace_spans(&layout, &ranges, trace_id))?;
        let mut spans = Vec::new();
        self.read_spans(&answer, &mut spans)?;
        dedup_by_start(&mut spans);
        Ok(spans)
    }

    fn search(&self, query: &SpanQuery) -> Result<Vec<TraceMatch>, StoreError> {
        if query.limit == 0 || query.start_unix_nanos >= query.end_unix_nanos {
            return Ok(Vec::new());
        }
        let layout = self.options.layout();
        let filter = queries::search_filter(query);
        let answer = self.query(&queries::search_trace_ids(&layout, &filter, query.limit))?;
        let mut reader = RowReader::new(&answer);
        let mut trace_ids = Vec::new();
        while !reader.is_empty() {
            let bytes = reader.fixed::<16>().map_err(|e| self.malformed(e))?;
            reader.u64().map_err(|e| self.malformed(e))?;
            trace_ids.push(TraceId::from_bytes(bytes).map_err(|e| StoreError::Engine {
                engine: "ClickHouse",
                url: self.options.url.clone(),
                reason: format!("a stored trace id is invalid: {e}"),
            })?);
        }
        if trace_ids.is_empty() {
            return Ok(Vec::new());
        }
        let answer = self.query(&queries::search_spans(&layout, &filter, &trace_ids))?;
        let mut spans = Vec::new();
        self.read_spans(&answer, &mut spans)?;
        let mut by_trace: HashMap<TraceId, Vec<Span>> = HashMap::new();
        for span in spans {
            by_trace.entry(span.trace_id).or_default().push(span);
        }
        let mut matches: Vec<TraceMatch> = trace_ids
            .into_iter()
            .filter_map(|trace_id| {
                let mut spans = by_trace.remove(&trace_id)?;
                dedup_by_start(&mut spans);
                spans.reverse();
                // Only the matching spans were read: the views read the trace for its numbers.
                Some(TraceMatch { trace_id, spans, summary: None })
            })
            .collect();
        matches.sort_by_key(|m| std::cmp::Reverse((m.newest_start_unix_nanos(), m.trace_id)));
        Ok(matches)
    }

    fn sketches(&self, query: &SketchQuery) -> Result<Vec<SketchRow>, StoreError> {
        let layout = self.options.layout();
        let filter = queries::sketch_filter(query);
        let read_series = |r: &mut RowReader<'_>| -> Result<(SeriesKey, i64), Malformed> {
            Ok((
                SeriesKey {
                    service: r.string()?,
                    environment: r.string()?,
                    operation: r.string()?,
                    span_kind: r.string()?,
                    version: r.string()?,
                },
                r.i64()?,
            ))
        };
        let mut merged: BTreeMap<(SeriesKey, i64), WindowStats> = BTreeMap::new();
        let answer = self.query(&queries::sketch_rows(&layout, &filter))?;
        let mut reader = RowReader::new(&answer);
        while !reader.is_empty() {
            let mut read = || -> Result<_, Malformed> {
                let key = read_series(&mut reader)?;
                let spans = reader.u64()?;
                let errors = reader.u64()?;
                let buckets =
                    (0..reader.len()?).map(|_| reader.i32()).collect::<Result<Vec<_>, _>>()?;
                let counts_len = reader.len()?;
                if counts_len != buckets.len() {
                    return Err(Malformed("sumMap's keys and values differ in length"));
                }
                let counts =
                    (0..counts_len).map(|_| reader.u64()).collect::<Result<Vec<_>, _>>()?;
                let sampled = reader.u64()?;
                let latency = LatencySketch::from_indexed_counts(buckets.into_iter().zip(counts))
                    .ok_or(Malformed("a latency bucket is out of range"))?;
                let stats =
                    WindowStats { latency, spans, errors, error_types: BTreeMap::new(), sampled };
                Ok((key, stats))
            };
            let (key, stats) = read().map_err(|e| self.malformed(e))?;
            merged.entry(key).or_default().merge(&stats);
        }
        let answer = self.query(&queries::sketch_error_rows(&layout, &filter))?;
        let mut reader = RowReader::new(&answer);
        while !reader.is_empty() {
            let mut read = || -> Result<_, Malformed> {
                Ok((read_series(&mut reader)?, reader.string()?, reader.u64()?))
            };
            let (key, error_type, count) = read().map_err(|e| self.malformed(e))?;
            *merged.entry(key).or_default().error_types.entry(error_type).or_default() += count;
        }
        Ok(merged
            .into_iter()
            .map(|((series, unix_minute), stats)| SketchRow {
                series,
                unix_minute,
                resolution_minutes: 1,
                stats,
            })
            .collect())
    }

    /// ClickHouse keeps minutes (its merges already add each minute's rows into one), so
    /// nothing is rolled up; sketches older than `max_age` go by whole days.
    fn roll_up_sketches(
        &self,
        now_unix_nanos: u64,
        _minutes_max_age_nanos: u64,
        max_age_nanos: u64,
    ) -> Result<RollUpReport, StoreError> {
        let cutoff_day = (now_unix_nanos.saturating_sub(max_age_nanos) / NANOS_PER_DAY) as i64;
        let report =
            self.drop_days(&[&schema::SKETCHES, &schema::SKETCH_ERRORS], cutoff_day, None)?;
        Ok(RollUpReport { rolled_up_minutes: 0, deleted_buckets: report.deleted_blocks })
    }

    fn flush_catalog(&self) -> Result<(), StoreError> {
        self.catalog.flush(&self.metadata)
    }

    /// Writes the catalog and, while ClickHouse is thought unreachable, asks it again, so
    /// readiness comes back without waiting for a write (a load balancer sends none to a
    /// replica that is not ready).
    fn maintain(&self, _now_unix_nanos: u64) -> Result<(), StoreError> {
        if !self.reachable.load(Ordering::Relaxed) {
            self.query("SELECT 1")?;
        }
        self.flush_catalog()
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.flush_catalog()
    }

    fn enforce_retention(
        &self,
        now_unix_nanos: u64,
        max_age_nanos: u64,
        disk_budget_bytes: Option<u64>,
    ) -> Result<RetentionReport, StoreError> {
        let cutoff_day = (now_unix_nanos.saturating_sub(max_age_nanos) / NANOS_PER_DAY) as i64;
        self.drop_days(&[&schema::SPANS, &schema::TRACE_INDEX], cutoff_day, disk_budget_bytes)
    }

    fn is_healthy(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }

    fn recovered_spans(&self) -> u64 {
        0
    }
}
