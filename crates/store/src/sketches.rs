//! Per-minute latency sketches, span and error counts and error types of every (service,
//! environment, operation, span kind, version): what detection reads instead of raw spans.
//!
//! Ingest adds each batch to the head part its WAL record belongs to ([`SketchDelta`]). When a
//! head part is sealed, its sketches are merged into SQLite *before* its block is written, in
//! one transaction that also advances the *sketch watermark* to the part's last WAL segment.
//! Recovery replays every unsealed segment into the head for its spans, but adds to the
//! sketches only the segments above the watermark. So each span counts exactly once, whether
//! the process dies before, between or after the two steps.
//!
//! Minutes older than the roll-up age are merged into hours (merges are exact); hours past the
//! sketch retention are deleted.

use std::collections::{BTreeMap, HashMap};

use analysis::WindowStats;
use model::Span;
use rusqlite::{Connection, OptionalExtension, params};

use crate::StoreError;

pub(crate) const NANOS_PER_MINUTE: u64 = 60 * 1_000_000_000;
const MINUTES_PER_HOUR: i64 = 60;

/// One series: what is compared across a deploy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub service: String,
    pub environment: String,
    pub operation: String,
    pub span_kind: String,
    pub version: String,
}

/// One stored time bucket of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct SketchRow {
    pub series: SeriesKey,
    /// The bucket's first minute since the Unix epoch.
    pub unix_minute: i64,
    /// 1 for minutes, 60 for rolled-up hours.
    pub resolution_minutes: i64,
    pub stats: WindowStats,
}

/// Which sketches to read: one service (and optionally one environment), minutes
/// `[from_unix_minute, to_unix_minute)`.
#[derive(Debug, Clone, Default)]
pub struct SketchQuery {
    pub service: String,
    pub environment: Option<String>,
    pub from_unix_minute: i64,
    pub to_unix_minute: i64,
}

impl SketchQuery {
    fn matches(&self, series: &SeriesKey, unix_minute: i64) -> bool {
        series.service == self.service
            && self.environment.as_ref().is_none_or(|e| *e == series.environment)
            && (self.from_unix_minute..self.to_unix_minute).contains(&unix_minute)
    }
}

/// Sketches gathered from spans not yet persisted.
#[derive(Debug, Default)]
pub(crate) struct SketchDelta {
    pub(crate) minutes: HashMap<(SeriesKey, i64), WindowStats>,
}

impl SketchDelta {
    /// The sketches of one batch. A batch repeats a handful of keys: aggregate under borrowed
    /// keys, allocate once per key.
    pub(crate) fn of_spans(spans: &[Span]) -> SketchDelta {
        type Borrowed<'a> = (&'a str, &'a str, &'a str, &'static str, &'a str, i64);
        let mut batch: HashMap<Borrowed<'_>, WindowStats> = HashMap::new();
        for span in spans {
            let key = (
                span.service_name(),
                span.environment().unwrap_or(""),
                span.operation(),
                span.kind.as_str(),
                span.version().unwrap_or(""),
                (span.start_time_unix_nanos / NANOS_PER_MINUTE) as i64,
            );
            batch.entry(key).or_default().add_sampled(
                span.duration_nanos(),
                span.error_type(),
                span.is_error(),
                span.adjusted_count(),
            );
        }
        let minutes = batch
            .into_iter()
            .map(|((service, environment, operation, span_kind, version, minute), stats)| {
                let series = SeriesKey {
                    service: service.to_owned(),
                    environment: environment.to_owned(),
                    operation: operation.to_owned(),
                    span_kind: span_kind.to_owned(),
                    version: version.to_owned(),
                };
                ((series, minute), stats)
            })
            .collect();
        SketchDelta { minutes }
    }

    pub(crate) fn merge(&mut self, other: SketchDelta) {
        for (key, stats) in other.minutes {
            match self.minutes.get_mut(&key) {
                Some(mine) => mine.merge(&stats),
                None => {
                    self.minutes.insert(key, stats);
                }
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.minutes.is_empty()
    }

    /// Adds the matching minutes to `out`.
    pub(crate) fn collect(
        &self,
        query: &SketchQuery,
        out: &mut BTreeMap<(SeriesKey, i64, i64), WindowStats>,
    ) {
        for ((series, minute), stats) in &self.minutes {
            if query.matches(series, *minute) {
                out.entry((series.clone(), *minute, 1)).or_default().merge(stats);
            }
        }
    }
}

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Metadata(e.to_string())
}

/// The newest WAL segment whose spans the stored sketches hold (0: none).
pub(crate) fn watermark(conn: &Connection) -> Result<u64, StoreError> {
    let segment: Option<i64> = conn
        .query_row("SELECT wal_segment FROM sketch_watermark WHERE id = 1", [], |row| row.get(0))
        .optional()
        .map_err(sql)?;
    Ok(segment.unwrap_or(0) as u64)
}

/// Merges `delta` into the stored minutes and advances the watermark to `last_wal_segment`,
/// atomically and durably; does nothing if the watermark is already there (a retried seal).
pub(crate) fn persist(
    conn: &mut Connection,
    delta: &SketchDelta,
    last_wal_segment: u64,
) -> Result<(), StoreError> {
    // A seal deletes WAL segments right after: this commit must survive power loss too.
    conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
    let result = persist_in_transaction(conn, delta, last_wal_segment);
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql)?;
    result
}

fn persist_in_transaction(
    conn: &mut Connection,
    delta: &SketchDelta,
    last_wal_segment: u64,
) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(sql)?;
    if watermark(&tx)? >= last_wal_segment {
        return Ok(());
    }
    for ((series, minute), stats) in &delta.minutes {
        merge_row(&tx, series, *minute, 1, stats)?;
    }
    tx.execute(
        "INSERT INTO sketch_watermark (id, wal_segment) VALUES (1, ?1)
         ON CONFLICT DO UPDATE SET wal_segment = excluded.wal_segment",
        [last_wal_segment as i64],
    )
    .map_err(sql)?;
    tx.commit().map_err(sql)
}

fn merge_row(
    conn: &Connection,
    series: &SeriesKey,
    unix_minute: i64,
    resolution_minutes: i64,
    stats: &WindowStats,
) -> Result<(), StoreError> {
    let key = params![
        series.service,
        series.environment,
        unix_minute,
        resolution_minutes,
        series.operation,
        series.span_kind,
        series.version,
    ];
    let existing: Option<Vec<u8>> = conn
        .prepare_cached(
            "SELECT stats FROM sketches WHERE service = ?1 AND environment = ?2
             AND unix_minute = ?3 AND resolution_minutes = ?4 AND operation = ?5
             AND span_kind = ?6 AND version = ?7",
        )
        .map_err(sql)?
        .query_row(key, |row| row.get(0))
        .optional()
        .map_err(sql)?;
    let mut merged = match existing {
        Some(bytes) => decode(&bytes, series, unix_minute)?,
        None => WindowStats::default(),
    };
    merged.merge(stats);
    conn.prepare_cached(
        "INSERT OR REPLACE INTO sketches (service, environment, unix_minute, resolution_minutes,
           operation, span_kind, version, spans, errors, stats)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .map_err(sql)?
    .execute(params![
        series.service,
        series.environment,
        unix_minute,
        resolution_minutes,
        series.operation,
        series.span_kind,
        series.version,
        merged.spans as i64,
        merged.errors as i64,
        merged.encode(),
    ])
    .map_err(sql)?;
    Ok(())
}

fn decode(bytes: &[u8], series: &SeriesKey, unix_minute: i64) -> Result<WindowStats, StoreError> {
    WindowStats::decode(bytes).ok_or_else(|| {
        StoreError::Metadata(format!(
            "the stored sketch of {}/{} at minute {unix_minute} is unreadable",
            series.service, series.operation
        ))
    })
}

/// Adds the stored buckets matching `query` to `out`. An hour bucket matches when its first
/// minute is in range.
pub(crate) fn collect_stored(
    conn: &Connection,
    query: &SketchQuery,
    out: &mut BTreeMap<(SeriesKey, i64, i64), WindowStats>,
) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT operation, span_kind, version, environment, unix_minute, resolution_minutes,
               stats FROM sketches
             WHERE service = ?1 AND (?2 IS NULL OR environment = ?2)
               AND unix_minute >= ?3 AND unix_minute < ?4",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map(
            params![query.service, query.environment, query.from_unix_minute, query.to_unix_minute],
            |row| {
                Ok((
                    SeriesKey {
                        service: query.service.clone(),
                        operation: row.get(0)?,
                        span_kind: row.get(1)?,
                        version: row.get(2)?,
                        environment: row.get(3)?,
                    },
                    row.get::<_, i64>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, Vec<u8>>(6)?,
                ))
            },
        )
        .map_err(sql)?;
    for row in rows {
        let (series, minute, resolution, bytes) = row.map_err(sql)?;
        let stats = decode(&bytes, &series, minute)?;
        out.entry((series, minute, resolution)).or_default().merge(&stats);
    }
    Ok(())
}

/// What a roll-up pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RollUpReport {
    pub rolled_up_minutes: u64,
    pub deleted_buckets: u64,
}

/// Merges minute buckets before `minutes_before` into hour buckets, and deletes buckets of
/// either resolution before `delete_before` (both in Unix minutes); one transaction.
pub(crate) fn roll_up(
    conn: &mut Connection,
    minutes_before: i64,
    delete_before: i64,
) -> Result<RollUpReport, StoreError> {
    let tx = conn.transaction().map_err(sql)?;
    let mut report = RollUpReport::default();
    let old_minutes: Vec<(SeriesKey, i64, Vec<u8>)> = tx
        .prepare(
            "SELECT service, environment, operation, span_kind, version, unix_minute, stats
             FROM sketches WHERE resolution_minutes = 1 AND unix_minute < ?1",
        )
        .map_err(sql)?
        .query_map([minutes_before], |row| {
            Ok((
                SeriesKey {
                    service: row.get(0)?,
                    environment: row.get(1)?,
                    operation: row.get(2)?,
                    span_kind: row.get(3)?,
                    version: row.get(4)?,
                },
                row.get(5)?,
                row.get(6)?,
            ))
        })
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    let mut hours: BTreeMap<(SeriesKey, i64), WindowStats> = BTreeMap::new();
    for (series, minute, bytes) in old_minutes {
        report.rolled_up_minutes += 1;
        // An unreadable minute cannot be merged; dropping it is all a roll-up can do.
        if let Some(stats) = WindowStats::decode(&bytes) {
            let hour = minute.div_euclid(MINUTES_PER_HOUR) * MINUTES_PER_HOUR;
            hours.entry((series, hour)).or_default().merge(&stats);
        }
    }
    tx.execute(
        "DELETE FROM sketches WHERE resolution_minutes = 1 AND unix_minute < ?1",
        [minutes_before],
    )
    .map_err(sql)?;
    for ((series, hour), stats) in &hours {
        merge_row(&tx, series, *hour, MINUTES_PER_HOUR, stats)?;
    }
    report.deleted_buckets = tx
        .execute("DELETE FROM sketches WHERE unix_minute < ?1", [delete_before])
        .map_err(sql)? as u64;
    tx.commit().map_err(sql)?;
    Ok(report)
}
