//! The metadata database (SQLite in the data directory, or PostgreSQL for a fleet): opening,
//! migrations, transactions, and the service catalog. The other metadata modules (changes,
//! findings, access, outbox, leases) write their statements once through [`crate::sql`].
//!
//! Migrations are numbered per back-end: `crates/store/migrations/NNNN_*.sql` for SQLite
//! (`user_version` counts them) and `crates/store/migrations/postgres/` for PostgreSQL
//! (`spanblame_migrations` records them). A schema change adds one file to each.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use model::Span;
use rusqlite::Connection;

use crate::StoreError;
use crate::deploys::{Seen, VersionKey};
use crate::lock;
use crate::sql::postgres::{Pool, PostgresOptions};
use crate::sql::sqlite::{self, Sqlite};
use crate::sql::{Executor, args};

/// SQLite migrations in order; the database's `user_version` is the number applied so far.
const SQLITE_MIGRATIONS: &[(&str, &str)] = &[
    ("0001_catalog", include_str!("../migrations/0001_catalog.sql")),
    ("0002_change_graph", include_str!("../migrations/0002_change_graph.sql")),
    ("0003_review_branches", include_str!("../migrations/0003_review_branches.sql")),
    ("0004_sketches", include_str!("../migrations/0004_sketches.sql")),
    ("0005_findings", include_str!("../migrations/0005_findings.sql")),
    ("0006_access", include_str!("../migrations/0006_access.sql")),
    ("0007_outbox", include_str!("../migrations/0007_outbox.sql")),
    ("0008_fleet", include_str!("../migrations/0008_fleet.sql")),
    ("0009_branch_history", include_str!("../migrations/0009_branch_history.sql")),
    ("0010_audit_anchor_mac", include_str!("../migrations/0010_audit_anchor_mac.sql")),
    ("0011_finding_severity", include_str!("../migrations/0011_finding_severity.sql")),
    ("0012_gate_results", include_str!("../migrations/0012_gate_results.sql")),
    ("0013_forge_deploys", include_str!("../migrations/0013_forge_deploys.sql")),
    ("0014_outbox_result", include_str!("../migrations/0014_outbox_result.sql")),
];

/// PostgreSQL migrations in order; `spanblame_migrations` records those applied. The first
/// creates what SQLite's 0001-0008 did.
const POSTGRES_MIGRATIONS: &[(&str, &str)] = &[
    ("0001_metadata", include_str!("../migrations/postgres/0001_metadata.sql")),
    ("0002_branch_history", include_str!("../migrations/postgres/0002_branch_history.sql")),
    ("0003_audit_anchor_mac", include_str!("../migrations/postgres/0003_audit_anchor_mac.sql")),
    ("0004_finding_severity", include_str!("../migrations/postgres/0004_finding_severity.sql")),
    ("0005_gate_results", include_str!("../migrations/postgres/0005_gate_results.sql")),
    ("0006_forge_deploys", include_str!("../migrations/postgres/0006_forge_deploys.sql")),
    ("0007_outbox_result", include_str!("../migrations/postgres/0007_outbox_result.sql")),
];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct OperationKey {
    pub(crate) service: String,
    pub(crate) operation: String,
    pub(crate) span_kind: &'static str,
}

/// Catalog updates gathered since the last flush.
#[derive(Debug, Default)]
pub(crate) struct CatalogDelta {
    pub(crate) versions: HashMap<VersionKey, Seen>,
    pub(crate) operations: HashMap<OperationKey, Seen>,
    /// (service, version) -> the commit its spans name.
    pub(crate) version_commits: HashMap<(String, String), String>,
}

impl CatalogDelta {
    pub(crate) fn merge(&mut self, other: CatalogDelta) {
        for (key, seen) in other.versions {
            self.versions.entry(key).and_modify(|s| s.add(seen)).or_insert(seen);
        }
        for (key, seen) in other.operations {
            self.operations.entry(key).and_modify(|s| s.add(seen)).or_insert(seen);
        }
        self.version_commits.extend(other.version_commits);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.versions.is_empty() && self.operations.is_empty() && self.version_commits.is_empty()
    }
}

/// Catalog updates an engine gathered and has not written yet, and the versions this process
/// has written (so an engine can write a batch naming a new version at once).
#[derive(Default)]
pub(crate) struct PendingCatalog {
    delta: Mutex<CatalogDelta>,
    written_versions: Mutex<HashSet<VersionKey>>,
}

impl PendingCatalog {
    /// Adds a batch's spans; returns whether they name a version not written yet.
    pub(crate) fn note(&self, spans: &[Span]) -> bool {
        let mut delta = CatalogDelta::default();
        note_catalog(&mut delta, spans);
        let new_version = {
            let written = lock(&self.written_versions);
            delta.versions.keys().any(|key| !written.contains(key))
        };
        lock(&self.delta).merge(delta);
        new_version
    }

    /// Writes everything pending into `metadata`; on failure it stays pending.
    pub(crate) fn flush(&self, metadata: &Metadata) -> Result<(), StoreError> {
        let delta = std::mem::take(&mut *lock(&self.delta));
        if delta.is_empty() {
            return Ok(());
        }
        if let Err(e) = metadata.apply_catalog(&delta) {
            lock(&self.delta).merge(delta);
            return Err(e);
        }
        lock(&self.written_versions).extend(delta.versions.into_keys());
        Ok(())
    }
}

/// A service as the catalog knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSummary {
    pub name: String,
    pub operations: Vec<OperationSummary>,
    pub versions: Vec<VersionSummary>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OperationSummary {
    pub name: String,
    pub span_kind: String,
    pub first_seen_unix_nanos: u64,
    pub last_seen_unix_nanos: u64,
    pub num_spans: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VersionSummary {
    pub environment: Option<String>,
    pub version: Option<String>,
    pub first_seen_unix_nanos: u64,
    pub last_seen_unix_nanos: u64,
    pub num_spans: u64,
}

/// Where the metadata lives.
#[derive(Debug, Clone, Default)]
pub enum MetadataBackend {
    /// `metadata.sqlite` in the data directory: one process.
    #[default]
    Sqlite,
    /// A PostgreSQL database shared by every replica.
    Postgres(PostgresOptions),
}

impl MetadataBackend {
    /// Where the metadata of `data_dir` lives, for messages: the SQLite file, or the
    /// PostgreSQL URL without its password.
    pub fn describe(&self, data_dir: &Path) -> String {
        match self {
            MetadataBackend::Sqlite => format!("SQLite `{}`", data_dir.join(SQLITE_FILE).display()),
            MetadataBackend::Postgres(options) => {
                format!("PostgreSQL at {}", options.display_url())
            }
        }
    }
}

pub(crate) struct Metadata {
    db: Db,
    /// [`MetadataBackend::describe`], for messages.
    description: String,
}

enum Db {
    Sqlite(Mutex<Connection>),
    Postgres(Arc<Pool>),
}

pub(crate) const SQLITE_FILE: &str = "metadata.sqlite";

impl Metadata {
    /// Opens the metadata of `data_dir` (SQLite) or of `backend`, applying migrations.
    pub(crate) fn open(data_dir: &Path, backend: &MetadataBackend) -> Result<Metadata, StoreError> {
        let db = match backend {
            MetadataBackend::Sqlite => {
                Db::Sqlite(Mutex::new(open_sqlite(&data_dir.join(SQLITE_FILE))?))
            }
            MetadataBackend::Postgres(options) => {
                let pool = Pool::new(options)?;
                migrate_postgres(&pool)?;
                Db::Postgres(pool)
            }
        };
        Ok(Metadata { db, description: backend.describe(data_dir) })
    }

    /// Opens the metadata without changing it: SQLite read-only (no migrations, refused when
    /// its schema is not this build's), for commands that only read beside a running server.
    pub(crate) fn open_read_only(
        data_dir: &Path,
        backend: &MetadataBackend,
    ) -> Result<Metadata, StoreError> {
        let db = match backend {
            MetadataBackend::Sqlite => {
                let path = data_dir.join(SQLITE_FILE);
                let sql = |e: rusqlite::Error| {
                    StoreError::Metadata(format!("`{}` (read-only): {e}", path.display()))
                };
                let conn =
                    Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                        .map_err(sql)?;
                conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(sql)?;
                sqlite::register_functions(&conn).map_err(sql)?;
                let applied: u32 =
                    conn.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(sql)?;
                let known = SQLITE_MIGRATIONS.len();
                refuse_newer(applied, known, &format!("`{}`", path.display()))?;
                if (applied as usize) < known {
                    return Err(StoreError::Metadata(format!(
                        "`{}` has metadata schema version {applied}, older than this spanblame's \
                         {known}, and a read-only command does not migrate: run `spanblame migrate` \
                         (or start the server) first",
                        path.display()
                    )));
                }
                Db::Sqlite(Mutex::new(conn))
            }
            MetadataBackend::Postgres(_) => return Metadata::open(data_dir, backend),
        };
        Ok(Metadata { db, description: backend.describe(data_dir) })
    }

    /// What the metadata is, for messages: the SQLite file or the PostgreSQL URL.
    pub(crate) fn describe(&self) -> &str {
        &self.description
    }

    /// Runs `work` outside a transaction (each statement sees committed data).
    pub(crate) fn read<T>(
        &self,
        work: impl FnOnce(&mut dyn Executor) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.db {
            Db::Sqlite(conn) => work(&mut Sqlite(&lock(conn))),
            Db::Postgres(pool) => pool.read(work),
        }
    }

    /// Runs `work` in a transaction, committed when it returns `Ok`. Writes are serialised
    /// across every process sharing the database (SQLite's write lock, taken at `BEGIN`; a
    /// PostgreSQL advisory lock), so `work` may read, decide and write.
    pub(crate) fn write<T>(
        &self,
        work: impl FnOnce(&mut dyn Executor) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.db {
            Db::Sqlite(conn) => sqlite_transaction(&mut lock(conn), work),
            Db::Postgres(pool) => pool.write(work),
        }
    }

    /// [`write`](Self::write), durable at commit even across a power loss (SQLite's
    /// `synchronous = FULL` for this transaction; PostgreSQL commits are durable).
    pub(crate) fn write_durable<T>(
        &self,
        work: impl FnOnce(&mut dyn Executor) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.db {
            Db::Sqlite(conn) => {
                // One guard for all three steps, so no other write runs between them.
                let mut conn = lock(conn);
                conn.pragma_update(None, "synchronous", "FULL").map_err(sqlite::error)?;
                let out = sqlite_transaction(&mut conn, work);
                conn.pragma_update(None, "synchronous", "NORMAL").map_err(sqlite::error)?;
                out
            }
            Db::Postgres(pool) => pool.write(work),
        }
    }

    /// The SQLite connection, for the embedded span engine's sketches (which live beside
    /// the metadata only when it is SQLite).
    pub(crate) fn sqlite(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        match &self.db {
            Db::Sqlite(conn) => Ok(lock(conn)),
            Db::Postgres(pool) => Err(StoreError::Metadata(format!(
                "the embedded span engine keeps its sketches in SQLite, not in PostgreSQL at {}; \
                 use `storage.kind = \"cluster\"` (ClickHouse) with PostgreSQL",
                pool.url()
            ))),
        }
    }

    pub(crate) fn apply_catalog(&self, delta: &CatalogDelta) -> Result<(), StoreError> {
        self.write(|db| {
            for (key, seen) in &delta.versions {
                let commit = delta.version_commits.get(&(key.service.clone(), key.version.clone()));
                crate::deploys::infer_deploy(db, key, seen, commit.map(String::as_str))?;
                let columns = "service, environment, version";
                upsert_seen(
                    db,
                    "service_versions",
                    columns,
                    [&key.service, &key.environment, &key.version],
                    seen,
                )?;
            }
            for (key, seen) in &delta.operations {
                let columns = "service, operation, span_kind";
                upsert_seen(
                    db,
                    "service_operations",
                    columns,
                    [&key.service, &key.operation, key.span_kind],
                    seen,
                )?;
            }
            for ((service, version), commit) in &delta.version_commits {
                db.execute(
                    "INSERT INTO version_commits VALUES (?1, ?2, ?3)
                     ON CONFLICT (service, version) DO UPDATE SET commit_sha = excluded.commit_sha",
                    args![service, version, commit],
                )?;
            }
            Ok(())
        })
    }

    pub(crate) fn services(&self) -> Result<Vec<ServiceSummary>, StoreError> {
        let (versions, operations) = self.read(|db| {
            let versions = db.query(
                "SELECT service, environment, version, first_seen_unix_nanos, last_seen_unix_nanos,
                        num_spans
                 FROM service_versions ORDER BY service, environment, first_seen_unix_nanos",
                args![],
            )?;
            let operations = db.query(
                "SELECT service, operation, span_kind, first_seen_unix_nanos, last_seen_unix_nanos,
                        num_spans
                 FROM service_operations ORDER BY service, operation, span_kind",
                args![],
            )?;
            Ok((versions, operations))
        })?;
        let mut services: Vec<ServiceSummary> = Vec::new();
        let find = |name: String, services: &mut Vec<ServiceSummary>| -> usize {
            match services.iter().position(|s| s.name == name) {
                Some(idx) => idx,
                None => {
                    services.push(ServiceSummary { name, operations: vec![], versions: vec![] });
                    services.len() - 1
                }
            }
        };
        let non_empty = |s: String| if s.is_empty() { None } else { Some(s) };
        for row in versions {
            let idx = find(row.get(0)?, &mut services);
            services[idx].versions.push(VersionSummary {
                environment: non_empty(row.get(1)?),
                version: non_empty(row.get(2)?),
                first_seen_unix_nanos: row.get(3)?,
                last_seen_unix_nanos: row.get(4)?,
                num_spans: row.get(5)?,
            });
        }
        for row in operations {
            let idx = find(row.get(0)?, &mut services);
            services[idx].operations.push(OperationSummary {
                name: row.get(1)?,
                span_kind: row.get(2)?,
                first_seen_unix_nanos: row.get(3)?,
                last_seen_unix_nanos: row.get(4)?,
                num_spans: row.get(5)?,
            });
        }
        services.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(services)
    }

    /// The number of migrations applied (each back-end numbers its own).
    pub(crate) fn schema_version(&self) -> Result<u32, StoreError> {
        match &self.db {
            Db::Sqlite(conn) => lock(conn)
                .query_row("PRAGMA user_version", [], |row| row.get(0))
                .map_err(sqlite::error),
            Db::Postgres(pool) => pool.read(postgres_version),
        }
    }
}

/// Opens the SQLite database at `path` and applies its migrations.
fn open_sqlite(path: &Path) -> Result<Connection, StoreError> {
    let sql = |e: rusqlite::Error| StoreError::Metadata(format!("`{}`: {e}", path.display()));
    let mut conn = Connection::open(path).map_err(sql)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql)?;
    conn.pragma_update(None, "foreign_keys", true).map_err(sql)?;
    // The CLI may write beside a running server (tokens, audit); wait for its lock.
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(sql)?;
    sqlite::register_functions(&conn).map_err(sql)?;
    migrate_sqlite(&mut conn, path)?;
    Ok(conn)
}

/// Runs `work` in an immediate (write-locked) SQLite transaction; commits on `Ok`.
fn sqlite_transaction<T>(
    conn: &mut Connection,
    work: impl FnOnce(&mut dyn Executor) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sqlite::error)?;
    let out = work(&mut Sqlite(&tx))?;
    tx.commit().map_err(sqlite::error)?;
    Ok(out)
}

/// Adds `seen` to the row of a catalog table keyed by three text columns.
fn upsert_seen(
    db: &mut dyn Executor,
    table: &str,
    key_columns: &str,
    key: [&str; 3],
    seen: &Seen,
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO {table} VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT ({key_columns}) DO UPDATE SET
           first_seen_unix_nanos = least({table}.first_seen_unix_nanos, excluded.first_seen_unix_nanos),
           last_seen_unix_nanos = greatest({table}.last_seen_unix_nanos, excluded.last_seen_unix_nanos),
           num_spans = {table}.num_spans + excluded.num_spans"
    );
    let [a, b, c] = key;
    db.execute(&sql, args![a, b, c, seen.first_unix_nanos, seen.last_unix_nanos, seen.num_spans])?;
    Ok(())
}

/// The migrations applied to the metadata of `data_dir` or `backend` (0 when it does not
/// exist yet), without applying any.
pub(crate) fn applied_version(
    data_dir: &Path,
    backend: &MetadataBackend,
) -> Result<u32, StoreError> {
    match backend {
        MetadataBackend::Sqlite => {
            let path = data_dir.join(SQLITE_FILE);
            if !path.exists() {
                return Ok(0);
            }
            let sql =
                |e: rusqlite::Error| StoreError::Metadata(format!("`{}`: {e}", path.display()));
            let conn = Connection::open(&path).map_err(sql)?;
            conn.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(sql)
        }
        MetadataBackend::Postgres(options) => Pool::new(options)?.read(postgres_version),
    }
}

/// The migrations this build has for `backend`.
pub(crate) fn known_version(backend: &MetadataBackend) -> u32 {
    match backend {
        MetadataBackend::Sqlite => SQLITE_MIGRATIONS.len() as u32,
        MetadataBackend::Postgres(_) => POSTGRES_MIGRATIONS.len() as u32,
    }
}

/// Applies the SQLite migrations not yet applied, each in its own transaction.
fn migrate_sqlite(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let sql = |e: rusqlite::Error| StoreError::Metadata(format!("`{}`: {e}", path.display()));
    let applied: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(sql)?;
    refuse_newer(applied, SQLITE_MIGRATIONS.len(), &format!("`{}`", path.display()))?;
    for (number, (name, script)) in SQLITE_MIGRATIONS.iter().enumerate().skip(applied as usize) {
        let tx = conn.transaction().map_err(sql)?;
        tx.execute_batch(script).map_err(sql)?;
        tx.pragma_update(None, "user_version", number as u32 + 1).map_err(sql)?;
        tx.commit().map_err(sql)?;
        tracing::info!(migration = name, "applied metadata migration");
    }
    Ok(())
}

fn refuse_newer(applied: u32, known: usize, what: &str) -> Result<(), StoreError> {
    if applied as usize > known {
        return Err(StoreError::Metadata(format!(
            "{what} has metadata schema version {applied}, newer than this spanblame's {known}; \
             run the newer spanblame (or restore a backup from before the upgrade)"
        )));
    }
    Ok(())
}

/// The advisory lock migrations hold, so replicas starting together migrate once.
const MIGRATION_LOCK: i64 = 0x7370_616e_6d69_6772;

fn postgres_version(db: &mut dyn Executor) -> Result<u32, StoreError> {
    let exists: Option<String> = db
        .query_value("SELECT CAST(to_regclass('spanblame_migrations') AS TEXT)", args![])?
        .flatten();
    if exists.is_none() {
        return Ok(0);
    }
    let version: i64 = db
        .query_value("SELECT coalesce(max(version), 0) FROM spanblame_migrations", args![])?
        .unwrap_or(0);
    Ok(version as u32)
}

/// Applies the PostgreSQL migrations not yet applied, in one transaction.
fn migrate_postgres(pool: &Pool) -> Result<(), StoreError> {
    pool.transaction(MIGRATION_LOCK, |db| {
        db.batch(
            "CREATE TABLE IF NOT EXISTS spanblame_migrations (
                 version BIGINT PRIMARY KEY,
                 name TEXT NOT NULL,
                 applied_unix_nanos BIGINT NOT NULL
             )",
        )?;
        let applied = postgres_version(db)?;
        refuse_newer(applied, POSTGRES_MIGRATIONS.len(), &format!("PostgreSQL at {}", pool.url()))?;
        for (number, (name, script)) in
            POSTGRES_MIGRATIONS.iter().enumerate().skip(applied as usize)
        {
            db.batch(script)?;
            db.execute(
                "INSERT INTO spanblame_migrations VALUES (?1, ?2, ?3)",
                args![number as i64 + 1, name, crate::now_unix_nanos()],
            )?;
            tracing::info!(migration = name, url = pool.url(), "applied metadata migration");
        }
        Ok(())
    })
}

/// Adds the spans' (service, environment, version) and (service, operation, kind) to the catalog.
pub(crate) fn note_catalog(delta: &mut CatalogDelta, spans: &[Span]) {
    // A batch repeats a handful of keys: count under borrowed keys, allocate once per key.
    let mut versions: HashMap<(&str, &str, &str), Seen> = HashMap::new();
    let mut operations: HashMap<(&str, &str, &'static str), Seen> = HashMap::new();
    let mut commit_checked: HashSet<(&str, &str)> = HashSet::new();
    for span in spans {
        let seen = Seen::new(span.start_time_unix_nanos);
        let service = span.service_name();
        let version = (service, span.environment().unwrap_or(""), span.version().unwrap_or(""));
        versions.entry(version).and_modify(|s| s.add(seen)).or_insert(seen);
        // The commit a version was built from, once per (service, version) and batch.
        if !version.2.is_empty()
            && commit_checked.insert((service, version.2))
            && let Some(commit) = span_commit(span)
        {
            delta
                .version_commits
                .insert((service.to_owned(), version.2.to_owned()), commit.to_ascii_lowercase());
        }
        let operation = (service, span.operation(), span.kind.as_str());
        operations.entry(operation).and_modify(|s| s.add(seen)).or_insert(seen);
    }
    for ((service, environment, version), seen) in versions {
        let key = VersionKey {
            service: service.to_owned(),
            environment: environment.to_owned(),
            version: version.to_owned(),
        };
        delta.versions.entry(key).and_modify(|s| s.add(seen)).or_insert(seen);
    }
    for ((service, operation, span_kind), seen) in operations {
        let key = OperationKey {
            service: service.to_owned(),
            operation: operation.to_owned(),
            span_kind,
        };
        delta.operations.entry(key).and_modify(|s| s.add(seen)).or_insert(seen);
    }
}

/// The commit a span names through any of the conventions (`vcs.ref.head.revision`, ...).
fn span_commit(span: &Span) -> Option<&str> {
    model::attribute_names::COMMIT.iter().find_map(|name| match span.attribute(name) {
        Some(model::Value::String(sha)) if model::looks_like_sha(sha) => Some(sha.as_str()),
        _ => None,
    })
}
