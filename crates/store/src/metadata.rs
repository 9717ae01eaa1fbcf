//! The embedded relational store for metadata (SQLite through `rusqlite`): schema migrations
//! and the service catalog. Later features (commits, reviews, deploys, findings, tokens, audit)
//! add their tables as further numbered migrations in `crates/store/migrations/`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use model::Span;
use rusqlite::{Connection, OptionalExtension, params};

use crate::StoreError;

/// Migrations in order; the database's `user_version` is the number applied so far.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_catalog", include_str!("../migrations/0001_catalog.sql")),
    ("0002_change_graph", include_str!("../migrations/0002_change_graph.sql")),
    ("0003_review_branches", include_str!("../migrations/0003_review_branches.sql")),
    ("0004_sketches", include_str!("../migrations/0004_sketches.sql")),
    ("0005_findings", include_str!("../migrations/0005_findings.sql")),
    ("0006_access", include_str!("../migrations/0006_access.sql")),
    ("0007_outbox", include_str!("../migrations/0007_outbox.sql")),
];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct VersionKey {
    pub(crate) service: String,
    pub(crate) environment: String,
    pub(crate) version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct OperationKey {
    pub(crate) service: String,
    pub(crate) operation: String,
    pub(crate) span_kind: &'static str,
}

/// First and last span start seen for a catalog key, and how many spans.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    pub(crate) first_unix_nanos: u64,
    pub(crate) last_unix_nanos: u64,
    pub(crate) num_spans: u64,
}

impl Seen {
    pub(crate) fn new(unix_nanos: u64) -> Seen {
        Seen { first_unix_nanos: unix_nanos, last_unix_nanos: unix_nanos, num_spans: 1 }
    }

    pub(crate) fn add(&mut self, other: Seen) {
        self.first_unix_nanos = self.first_unix_nanos.min(other.first_unix_nanos);
        self.last_unix_nanos = self.last_unix_nanos.max(other.last_unix_nanos);
        self.num_spans += other.num_spans;
    }
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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

pub(crate) struct Metadata {
    conn: Mutex<Connection>,
}

impl Metadata {
    pub(crate) fn open(path: &Path) -> Result<Metadata, StoreError> {
        let sql = |e: rusqlite::Error| StoreError::Metadata(format!("`{}`: {e}", path.display()));
        let mut conn = Connection::open(path).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", true).map_err(sql)?;
        // The CLI may write beside a running server (tokens, audit); wait for its lock.
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(sql)?;
        migrate(&mut conn).map_err(sql)?;
        Ok(Metadata { conn: Mutex::new(conn) })
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn apply_catalog(&self, delta: &CatalogDelta) -> Result<(), StoreError> {
        let sql = |e: rusqlite::Error| StoreError::Metadata(e.to_string());
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql)?;
        {
            let mut upsert_version = tx
                .prepare_cached(
                    "INSERT INTO service_versions VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT DO UPDATE SET
                       first_seen_unix_nanos = min(first_seen_unix_nanos, excluded.first_seen_unix_nanos),
                       last_seen_unix_nanos = max(last_seen_unix_nanos, excluded.last_seen_unix_nanos),
                       num_spans = num_spans + excluded.num_spans",
                )
                .map_err(sql)?;
            for (key, seen) in &delta.versions {
                crate::changes::infer_deploy(&tx, key, seen).map_err(sql)?;
                upsert_version
                    .execute(params![
                        key.service,
                        key.environment,
                        key.version,
                        seen.first_unix_nanos as i64,
                        seen.last_unix_nanos as i64,
                        seen.num_spans as i64
                    ])
                    .map_err(sql)?;
            }
            let mut upsert_operation = tx
                .prepare_cached(
                    "INSERT INTO service_operations VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT DO UPDATE SET
                       first_seen_unix_nanos = min(first_seen_unix_nanos, excluded.first_seen_unix_nanos),
                       last_seen_unix_nanos = max(last_seen_unix_nanos, excluded.last_seen_unix_nanos),
                       num_spans = num_spans + excluded.num_spans",
                )
                .map_err(sql)?;
            for (key, seen) in &delta.operations {
                upsert_operation
                    .execute(params![
                        key.service,
                        key.operation,
                        key.span_kind,
                        seen.first_unix_nanos as i64,
                        seen.last_unix_nanos as i64,
                        seen.num_spans as i64
                    ])
                    .map_err(sql)?;
            }
            let mut upsert_commit = tx
                .prepare_cached(
                    "INSERT INTO version_commits VALUES (?1, ?2, ?3)
                     ON CONFLICT DO UPDATE SET commit_sha = excluded.commit_sha",
                )
                .map_err(sql)?;
            for ((service, version), commit) in &delta.version_commits {
                upsert_commit.execute(params![service, version, commit]).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }

    pub(crate) fn services(&self) -> Result<Vec<ServiceSummary>, StoreError> {
        let sql = |e: rusqlite::Error| StoreError::Metadata(e.to_string());
        let conn = self.conn();
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
        let mut stmt = conn
            .prepare(
                "SELECT service, environment, version, first_seen_unix_nanos, last_seen_unix_nanos,
                        num_spans
                 FROM service_versions ORDER BY service, environment, first_seen_unix_nanos",
            )
            .map_err(sql)?;
        let mut rows = stmt.query([]).map_err(sql)?;
        while let Some(row) = rows.next().map_err(sql)? {
            let idx = find(row.get(0).map_err(sql)?, &mut services);
            let non_empty = |s: String| if s.is_empty() { None } else { Some(s) };
            services[idx].versions.push(VersionSummary {
                environment: non_empty(row.get(1).map_err(sql)?),
                version: non_empty(row.get(2).map_err(sql)?),
                first_seen_unix_nanos: row.get::<_, i64>(3).map_err(sql)? as u64,
                last_seen_unix_nanos: row.get::<_, i64>(4).map_err(sql)? as u64,
                num_spans: row.get::<_, i64>(5).map_err(sql)? as u64,
            });
        }
        let mut stmt = conn
            .prepare(
                "SELECT service, operation, span_kind, first_seen_unix_nanos, last_seen_unix_nanos,
                        num_spans
                 FROM service_operations ORDER BY service, operation, span_kind",
            )
            .map_err(sql)?;
        let mut rows = stmt.query([]).map_err(sql)?;
        while let Some(row) = rows.next().map_err(sql)? {
            let idx = find(row.get(0).map_err(sql)?, &mut services);
            services[idx].operations.push(OperationSummary {
                name: row.get(1).map_err(sql)?,
                span_kind: row.get(2).map_err(sql)?,
                first_seen_unix_nanos: row.get::<_, i64>(3).map_err(sql)? as u64,
                last_seen_unix_nanos: row.get::<_, i64>(4).map_err(sql)? as u64,
                num_spans: row.get::<_, i64>(5).map_err(sql)? as u64,
            });
        }
        services.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(services)
    }

    pub(crate) fn schema_version(&self) -> Result<u32, StoreError> {
        let conn = self.conn();
        conn.query_row("PRAGMA user_version", [], |row| row.get(0))
            .optional()
            .map(|v| v.unwrap_or(0))
            .map_err(|e| StoreError::Metadata(e.to_string()))
    }
}

/// The migrations applied to the database at `path` (0 when it does not exist yet).
pub(crate) fn applied_version(path: &Path) -> Result<u32, StoreError> {
    if !path.exists() {
        return Ok(0);
    }
    let sql = |e: rusqlite::Error| StoreError::Metadata(format!("`{}`: {e}", path.display()));
    let conn = Connection::open(path).map_err(sql)?;
    conn.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(sql)
}

/// Applies the migrations not yet applied, each in its own transaction.
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let applied: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    for (number, (name, sql)) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", number as u32 + 1)?;
        tx.commit()?;
        tracing::info!(migration = name, "applied metadata migration");
    }
    Ok(())
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
