//! spanblame's storage: spans and sketches in a *span engine* (the embedded one, or
//! ClickHouse), metadata (the catalog, the change graph, findings, accounts, the outbox,
//! leases) in a relational database ([`MetadataBackend`]: SQLite, or PostgreSQL for a fleet).
//!
//! [`SpanStore`] is what the server holds. Its span methods go to the engine chosen when it
//! was opened ([`SpanBackend`]): [`embedded`] (a write-ahead log into columnar blocks, the
//! default) or [`clickhouse`] (the scale-out engine). Its metadata methods live in the
//! modules named after what they store, each statement written once through `sql`. Every
//! back-end passes the same conformance suite (`tests/conformance.rs`).
//!
//! May depend on: `model`, `analysis` (sketches), `auth` (the audit chain), SQLite, PostgreSQL
//! and HTTP to ClickHouse. **Never:** HTTP serving, knowing callers, or deciding what a
//! finding means (it stores what detection writes).

mod access;
pub mod backup;
mod block;
mod changes;
pub mod clickhouse;
mod codec;
mod deploys;
mod embedded;
mod findings;
mod gate;
mod leases;
mod lock;
mod metadata;
mod outbox;
mod query;
mod sketches;
mod sql;
mod wal;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use analysis::histogram::Histogram;
use model::{Span, TraceId};

use crate::metadata::Metadata;

pub use crate::access::{Accounts, NewAuditRecord, PendingSignIn, StoredSession, StoredToken};
pub use crate::changes::{Applied, BranchHead, ChangeBatch, StoredCommit, StoredReview};
pub use crate::clickhouse::ClickHouseOptions;
pub use crate::deploys::NewDeploy;
pub use crate::findings::{Evaluation, FindingFilter, FindingStatus, FindingUpdate, StoredFinding};
pub use crate::gate::GateResult;
pub use crate::lock::{DATA_DIR_FORMAT, DataDirLock, FORMAT_FILE, LOCK_FILE};
pub use crate::metadata::{MetadataBackend, OperationSummary, ServiceSummary, VersionSummary};
pub use crate::outbox::{AttemptOutcome, Delivery, DeliveryFilter, DeliveryState, NewDelivery};
pub use crate::query::{SpanQuery, TraceMatch, TraceSummary};
pub use crate::sketches::{RollUpReport, SeriesKey, SketchQuery, SketchRow};
pub use crate::sql::postgres::PostgresOptions;
pub use crate::wal::SyncPolicy;

/// Errors callers can act on; IO errors name the file, engine errors the engine's URL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("`{path}`: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// Another process owns the data directory (see [`DataDirLock`]).
    #[error(
        "data directory `{}` is in use by another spanblame process{}; stop it first, or give this one its own `--data-dir`",
        dir.display(),
        holder_pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Locked { dir: PathBuf, holder_pid: Option<u32> },
    /// The data directory was written by a newer spanblame (or its `FORMAT` is unreadable).
    #[error(
        "data directory `{}` has format {found}, which this spanblame (format {known}) cannot read; run the newer spanblame (or restore a backup taken before the upgrade)",
        dir.display()
    )]
    Format { dir: PathBuf, found: String, known: u32 },
    #[error("block `{path}` is corrupt: {reason}")]
    CorruptBlock { path: PathBuf, reason: String },
    #[error("metadata database: {0}")]
    Metadata(String),
    /// A backup, its verification or a restore cannot go on; the message says why and what
    /// to do.
    #[error("{0}")]
    Backup(String),
    /// The write path is saturated (sealing is behind); retry later.
    #[error("the span store is busy: {0}")]
    Busy(&'static str),
    /// An earlier write failed; the store refuses writes until restarted.
    #[error("the span store stopped accepting writes after an error: {0}")]
    Failed(String),
    /// An engine did not answer (down, unreachable, overloaded); nothing was stored, and
    /// the same call may succeed later.
    #[error("{engine} at {url} is unavailable: {reason}")]
    Unavailable { engine: &'static str, url: String, reason: String },
    /// An engine answered with an error that retrying will not fix (a schema or query bug).
    #[error("{engine} at {url}: {reason}")]
    Engine { engine: &'static str, url: String, reason: String },
}

impl StoreError {
    /// Whether the same call may succeed later (the caller should answer "retry").
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Busy(_) | StoreError::Unavailable { .. })
    }
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

/// Tuning of the embedded store. Defaults suit a laptop and a small server alike.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub sync: SyncPolicy,
    /// Spans in the head before it is frozen and sealed into a block.
    pub max_head_spans: usize,
    /// Oldest a non-empty head may get before it is sealed anyway.
    pub max_head_age_nanos: u64,
    /// Spans per row group in a block (the unit read to find a trace).
    pub row_group_spans: usize,
    /// Frozen heads waiting to be sealed before appends are refused as busy.
    pub max_frozen_heads: usize,
    /// Compaction merges runs of consecutive blocks smaller than half of this into blocks of
    /// up to this many spans, so the number of blocks follows retention, not flushes.
    pub compacted_block_spans: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sync: SyncPolicy::Always,
            max_head_spans: 128 * 1024,
            max_head_age_nanos: 5 * 60 * 1_000_000_000,
            row_group_spans: 8 * 1024,
            max_frozen_heads: 4,
            compacted_block_spans: 1024 * 1024,
        }
    }
}

/// Where spans and sketches go.
#[derive(Debug, Clone)]
pub enum SpanBackend {
    Embedded(StoreOptions),
    ClickHouse(ClickHouseOptions),
}

/// What every span engine does. The methods block: call them from a blocking context.
pub(crate) trait SpanEngine: Send + Sync {
    /// Stores spans; returns once they are durable and visible to queries.
    fn append(&self, spans: Vec<Span>) -> Result<(), StoreError>;
    fn trace(&self, trace_id: &TraceId) -> Result<Vec<Span>, StoreError>;
    fn search(&self, query: &SpanQuery) -> Result<Vec<TraceMatch>, StoreError>;
    fn sketches(&self, query: &SketchQuery) -> Result<Vec<SketchRow>, StoreError>;
    fn roll_up_sketches(
        &self,
        now_unix_nanos: u64,
        minutes_max_age_nanos: u64,
        max_age_nanos: u64,
    ) -> Result<RollUpReport, StoreError>;
    /// Writes what the engine gathered for the catalog into the metadata.
    fn flush_catalog(&self) -> Result<(), StoreError>;
    fn maintain(&self, now_unix_nanos: u64) -> Result<(), StoreError>;
    /// Merges small blocks while any are due (engines without blocks have nothing to do).
    fn compact(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn flush(&self) -> Result<(), StoreError>;
    fn enforce_retention(
        &self,
        now_unix_nanos: u64,
        max_age_nanos: u64,
        disk_budget_bytes: Option<u64>,
    ) -> Result<RetentionReport, StoreError>;
    /// Whether writes are expected to succeed, from what the engine last saw (never blocks).
    fn is_healthy(&self) -> bool;
    fn stats(&self) -> StoreStats;
    fn recovered_spans(&self) -> u64;
    /// The embedded engine, for tests of its internals.
    #[cfg(test)]
    fn as_embedded(&self) -> Option<&embedded::Embedded> {
        None
    }
}

/// Applies the metadata migrations (creating the database when new); returns the schema
/// version before and after.
pub fn migrate_metadata(
    data_dir: &Path,
    backend: &MetadataBackend,
) -> Result<(u32, u32), StoreError> {
    // SQLite in the data directory belongs to whoever owns the directory; PostgreSQL is
    // migrated beside running replicas (its own advisory lock serialises migrations).
    let _owner = match backend {
        MetadataBackend::Sqlite => Some(DataDirLock::acquire(data_dir)?),
        MetadataBackend::Postgres(_) => {
            std::fs::create_dir_all(data_dir).map_err(io_error(data_dir))?;
            None
        }
    };
    let before = metadata::applied_version(data_dir, backend)?;
    let after = Metadata::open(data_dir, backend)?.schema_version()?;
    Ok((before, after))
}

/// The metadata's schema version and the one this build knows, without changing anything
/// (on PostgreSQL, this connects: `check-config` reports what it finds).
pub fn metadata_schema_versions(
    data_dir: &Path,
    backend: &MetadataBackend,
) -> Result<(u32, u32), StoreError> {
    Ok((metadata::applied_version(data_dir, backend)?, metadata::known_version(backend)))
}

pub(crate) fn now_unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Spans, sketches and metadata behind one handle.
pub struct SpanStore {
    engine: Box<dyn SpanEngine>,
    metadata: Arc<Metadata>,
    accounts: Accounts,
    /// How long reads took, whichever engine answered.
    reads: ReadTimings,
    /// Held for the store's life: no second process writes the same data directory.
    _owner: DataDirLock,
}

#[derive(Debug, Default)]
struct ReadTimings {
    trace: Mutex<Histogram>,
    search: Mutex<Histogram>,
}

/// A lock whose holder panicked is still taken: no code panics while holding the store's
/// locks except on a bug, and the store keeps serving.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SpanStore {
    /// Opens (or creates) the embedded store in `data_dir`, replaying the WAL into the head.
    pub fn open(data_dir: &Path, options: StoreOptions) -> Result<SpanStore, StoreError> {
        SpanStore::open_with(data_dir, SpanBackend::Embedded(options), &MetadataBackend::Sqlite)
    }

    /// Opens the store with spans in `backend` and metadata in `metadata`. The data
    /// directory holds the audit key (and, by default, the metadata and spans); the store
    /// owns it ([`DataDirLock`]) until dropped, and refuses to open while another process does.
    pub fn open_with(
        data_dir: &Path,
        backend: SpanBackend,
        metadata: &MetadataBackend,
    ) -> Result<SpanStore, StoreError> {
        let owner = DataDirLock::acquire(data_dir)?;
        let metadata = Arc::new(Metadata::open(data_dir, metadata)?);
        let accounts = Accounts::new(Arc::clone(&metadata), data_dir)?;
        let engine: Box<dyn SpanEngine> = match backend {
            SpanBackend::Embedded(options) => {
                Box::new(embedded::Embedded::open(data_dir, options, Arc::clone(&metadata))?)
            }
            SpanBackend::ClickHouse(options) => {
                Box::new(clickhouse::ClickHouse::open(options, Arc::clone(&metadata))?)
            }
        };
        Ok(SpanStore { engine, metadata, accounts, reads: ReadTimings::default(), _owner: owner })
    }

    /// Spans recovered from the WAL when the store was opened (0 for engines without one).
    pub fn recovered_spans(&self) -> u64 {
        self.engine.recovered_spans()
    }

    /// Stores spans durably: returns once they are durable and visible to queries. Blocks
    /// the calling thread: call it from a blocking context.
    pub fn append(&self, spans: Vec<Span>) -> Result<(), StoreError> {
        if spans.is_empty() {
            return Ok(());
        }
        self.engine.append(spans)
    }

    /// Background upkeep, called periodically with the current time.
    pub fn maintain(&self, now_unix_nanos: u64) -> Result<(), StoreError> {
        self.engine.maintain(now_unix_nanos)
    }

    /// Merges runs of small blocks into larger ones while any are due. Apart from
    /// [`maintain`](Self::maintain), so a long merge never delays sealing.
    pub fn compact(&self) -> Result<(), StoreError> {
        self.engine.compact()
    }

    /// Makes everything appended so far final (sealed, flushed): for shutdown, tests and
    /// benchmarks.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.engine.flush()
    }

    /// The sketches of one service's minutes, one row per series and bucket (rolled-up hours
    /// have `resolution_minutes` 60), ordered by series then minute.
    pub fn sketches(&self, query: &SketchQuery) -> Result<Vec<SketchRow>, StoreError> {
        self.engine.sketches(query)
    }

    /// Rolls stored minutes older than `minutes_max_age` into hours (where the engine rolls
    /// up) and deletes sketches older than `max_age` (both measured back from `now`).
    pub fn roll_up_sketches(
        &self,
        now_unix_nanos: u64,
        minutes_max_age_nanos: u64,
        max_age_nanos: u64,
    ) -> Result<RollUpReport, StoreError> {
        self.engine.roll_up_sketches(now_unix_nanos, minutes_max_age_nanos, max_age_nanos)
    }

    /// Every stored span of the trace, ordered by start time; duplicates (an exporter's retry
    /// of an export that had in fact succeeded) appear once.
    pub fn trace(&self, trace_id: &TraceId) -> Result<Vec<Span>, StoreError> {
        let started = Instant::now();
        let found = self.engine.trace(trace_id);
        lock(&self.reads.trace).observe(started.elapsed().as_secs_f64());
        found
    }

    /// Traces with a span matching `query`, newest matching span first.
    pub fn search(&self, query: &SpanQuery) -> Result<Vec<TraceMatch>, StoreError> {
        let started = Instant::now();
        let found = self.engine.search(query);
        lock(&self.reads.search).observe(started.elapsed().as_secs_f64());
        found
    }

    /// Services, their operations, and the (environment, version) pairs seen, from the catalog.
    pub fn services(&self) -> Result<Vec<ServiceSummary>, StoreError> {
        self.flush_catalog()?;
        self.metadata.services()
    }

    /// Writes what the engine gathered for the catalog, for reads of the catalog.
    pub(crate) fn flush_catalog(&self) -> Result<(), StoreError> {
        self.engine.flush_catalog()
    }

    /// Deletes spans that ended before `now - max_age` (whole blocks or partitions), then,
    /// where the engine has a budget, the oldest until the rest fit in `disk_budget_bytes`.
    pub fn enforce_retention(
        &self,
        now_unix_nanos: u64,
        max_age_nanos: u64,
        disk_budget_bytes: Option<u64>,
    ) -> Result<RetentionReport, StoreError> {
        self.engine.enforce_retention(now_unix_nanos, max_age_nanos, disk_budget_bytes)
    }

    /// Whether writes are expected to succeed.
    pub fn is_healthy(&self) -> bool {
        self.engine.is_healthy()
    }

    /// Tokens, sessions and the audit log.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    pub fn metadata_schema_version(&self) -> Result<u32, StoreError> {
        self.metadata.schema_version()
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            trace_read_seconds: lock(&self.reads.trace).clone(),
            search_seconds: lock(&self.reads.search).clone(),
            ..self.engine.stats()
        }
    }

    #[cfg(test)]
    pub(crate) fn embedded(&self) -> &embedded::Embedded {
        self.engine.as_embedded().expect("INVARIANT: a test of the embedded engine opened it")
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub wal_bytes: u64,
    pub num_wal_segments: u64,
    pub num_blocks: u64,
    pub block_bytes: u64,
    pub num_block_spans: u64,
    pub num_head_spans: u64,
    pub num_frozen_heads: u64,
    pub pending_write_bytes: u64,
    pub num_sealed_blocks_total: u64,
    pub num_deleted_blocks_total: u64,
    /// Blocks merged into larger ones by compaction since start.
    pub num_compacted_blocks_total: u64,
    /// A group commit's WAL write and sync (embedded engine).
    pub wal_write_seconds: Histogram,
    /// Sealing a head into a block, its catalog and sketches included (embedded engine).
    pub seal_seconds: Histogram,
    /// One merge of small blocks (embedded engine).
    pub compaction_seconds: Histogram,
    /// Reading one trace by id.
    pub trace_read_seconds: Histogram,
    /// One search.
    pub search_seconds: Histogram,
}

/// What a retention pass removed: blocks (embedded) or partitions (ClickHouse).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub deleted_blocks: u64,
    pub deleted_bytes: u64,
}
