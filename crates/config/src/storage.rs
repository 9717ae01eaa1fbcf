//! `[storage]` and `[retention]`: the span engine (embedded or ClickHouse), the metadata
//! database (SQLite or PostgreSQL), and how long spans and audit records are kept.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::values::parse_duration_nanos;

/// Where spans, sketches and metadata live: one data directory (`embedded`, the default), or
/// ClickHouse and PostgreSQL for a fleet of replicas (`cluster`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `embedded` (one data directory) or `cluster` (spans and sketches in ClickHouse).
    pub kind: String,
    /// The data directory: the write-ahead log, blocks, the metadata (SQLite), `audit.key` and
    /// git mirrors; a fleet's replicas keep `audit.key` and mirrors here. One server at a time
    /// owns it (a lock).
    #[schemars(example = &"/var/lib/spanblame")]
    pub data_dir: PathBuf,
    /// `always` (fsync before acknowledging) or `never` (benchmarks and throwaway demos).
    pub wal_sync: String,
    /// `embedded`: spans held in memory before they are sealed into a block (memory against
    /// the number of small blocks).
    pub head_spans: usize,
    /// `embedded`: compaction merges runs of blocks smaller than half of this into blocks of
    /// up to this many spans.
    pub block_spans: usize,
    /// `cluster`: ClickHouse's HTTP interface, where queries and inserts go.
    #[schemars(example = &"http://clickhouse-1:8123")]
    pub clickhouse_url: Option<String>,
    /// `cluster`: the database for spanblame's tables (created when missing).
    pub clickhouse_database: String,
    /// `cluster`: a cluster from the servers' `remote_servers`; tables become `Distributed`
    /// over `*_local` tables on each shard.
    #[schemars(example = &"traces")]
    pub clickhouse_cluster: Option<String>,
    /// With `clickhouse_cluster`: every node's HTTP URL (a list, or comma-separated), where the
    /// schema is applied.
    #[schemars(example = ["http://clickhouse-1:8123", "http://clickhouse-2:8123"])]
    pub clickhouse_nodes: Option<OneOrMany>,
    /// `cluster`: the ClickHouse user (ClickHouse's `default` without it).
    #[schemars(example = &"spanblame")]
    pub clickhouse_user: Option<String>,
    /// `cluster`: the environment variable holding that user's password.
    #[schemars(example = &"SPANBLAME_CH_PASSWORD")]
    pub clickhouse_password_env: Option<String>,
    /// `cluster`: or a file holding it.
    #[schemars(example = &"/run/secrets/clickhouse-password")]
    pub clickhouse_password_file: Option<PathBuf>,
    /// `cluster`: how long one ClickHouse request may take.
    pub clickhouse_timeout: String,
    /// `cluster`: PostgreSQL for metadata, shared by every replica (without it, metadata
    /// stays in `data_dir` and only one replica may run). The URL holds the password, so it
    /// comes from the environment variable named here
    /// (`postgres://user:password@host:5432/database`).
    #[schemars(example = &"SPANBLAME_PG_URL")]
    pub postgres_url_env: Option<String>,
    /// `cluster`: or a file holding PostgreSQL's URL.
    #[schemars(example = &"/run/secrets/postgres-url")]
    pub postgres_url_file: Option<PathBuf>,
    /// PostgreSQL connections each replica keeps in its pool.
    pub postgres_max_connections: usize,
    /// How long connecting to PostgreSQL, or waiting for a free pooled connection, may take.
    pub postgres_timeout: String,
    /// How long a replica holds the background jobs' lease without renewing it: after a
    /// replica dies, another takes the jobs over within this time.
    pub background_lease: String,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            kind: "embedded".into(),
            data_dir: "./spanblame-data".into(),
            wal_sync: "always".into(),
            head_spans: store::StoreOptions::default().max_head_spans,
            block_spans: store::StoreOptions::default().compacted_block_spans,
            clickhouse_url: None,
            clickhouse_database: "spanblame".into(),
            clickhouse_cluster: None,
            clickhouse_nodes: None,
            clickhouse_user: None,
            clickhouse_password_env: None,
            clickhouse_password_file: None,
            clickhouse_timeout: "30s".into(),
            postgres_url_env: None,
            postgres_url_file: None,
            postgres_max_connections: 8,
            postgres_timeout: "10s".into(),
            background_lease: "15s".into(),
        }
    }
}

/// A list written as a TOML array or, from an environment variable, comma-separated.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> Vec<String> {
        match self {
            OneOrMany::One(text) => text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            OneOrMany::Many(items) => items.clone(),
        }
    }
}

/// How long data is kept. The background jobs delete what is older.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Spans: whole blocks (days in ClickHouse) older than this are deleted.
    pub spans: String,
    /// The most disk the span blocks may use: beyond it the oldest are deleted first, whatever
    /// their age (unset: no budget).
    #[schemars(example = &"50GiB")]
    pub disk_budget: Option<String>,
    /// Latency sketches: what detection, findings and charts read.
    pub sketches: String,
    /// Latency sketches are kept per minute this long, then rolled up into hours (`embedded`
    /// only: ClickHouse keeps minutes).
    pub sketch_minutes: String,
    /// The audit log, independent of span retention.
    pub audit: String,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            spans: "7d".into(),
            disk_budget: None,
            sketches: "90d".into(),
            sketch_minutes: "8d".into(),
            audit: "400d".into(),
        }
    }
}

/// `[storage]`'s metadata: SQLite in the data directory, or PostgreSQL (cluster only).
pub(super) fn resolve_metadata(
    storage: &StorageConfig,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<store::MetadataBackend> {
    let url = match (&storage.postgres_url_env, &storage.postgres_url_file) {
        (None, None) => return Ok(store::MetadataBackend::Sqlite),
        (Some(var), None) => env.get(var).cloned().with_context(|| {
            format!("`storage.postgres_url_env`: environment variable `{var}` is not set")
        })?,
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("`storage.postgres_url_file`: reading `{}`", file.display()))?
            .trim()
            .to_owned(),
        (Some(_), Some(_)) => {
            bail!("`storage`: set one of `postgres_url_env` or `postgres_url_file`, not both")
        }
    };
    if storage.kind != "cluster" {
        bail!(
            "`storage.postgres_url_env` / `postgres_url_file` need `storage.kind = \"cluster\"`: the embedded engine keeps its sketches beside SQLite metadata in `storage.data_dir`"
        );
    }
    if storage.postgres_max_connections == 0 {
        bail!("`storage.postgres_max_connections` must be at least 1");
    }
    let timeout = parse_duration_nanos(&storage.postgres_timeout)
        .with_context(|| format!("`storage.postgres_timeout` = `{}`", storage.postgres_timeout))?;
    let mut options = store::PostgresOptions::new(&url);
    options.max_connections = storage.postgres_max_connections;
    options.timeout = std::time::Duration::from_nanos(timeout);
    store::PostgresOptions::check(&options)
        .map_err(|e| anyhow::anyhow!("`storage.postgres_url_env` / `postgres_url_file`: {e}"))?;
    Ok(store::MetadataBackend::Postgres(options))
}

/// `[storage]`: the embedded engine, or ClickHouse with every key checked.
pub(super) fn resolve_storage(
    storage: &StorageConfig,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<store::SpanBackend> {
    match storage.kind.as_str() {
        "embedded" => {
            let sync = match storage.wal_sync.as_str() {
                "always" => store::SyncPolicy::Always,
                "never" => store::SyncPolicy::Never,
                other => bail!(
                    "`storage.wal_sync` = `{other}` is not valid; use `always` (durable) or `never` (benchmarks only)"
                ),
            };
            if storage.head_spans == 0 || storage.block_spans < storage.head_spans {
                bail!(
                    "`storage.head_spans` = {} and `storage.block_spans` = {} are not valid: the head needs at least one span and blocks are compacted up to `block_spans`, so it must be at least `head_spans` (defaults: 131072 and 1048576)",
                    storage.head_spans,
                    storage.block_spans
                );
            }
            Ok(store::SpanBackend::Embedded(store::StoreOptions {
                sync,
                max_head_spans: storage.head_spans,
                compacted_block_spans: storage.block_spans,
                ..store::StoreOptions::default()
            }))
        }
        "cluster" => {
            let url = storage.clickhouse_url.as_deref().context(
                "`storage.kind` = `cluster` needs `storage.clickhouse_url`, ClickHouse's HTTP interface (e.g. `http://clickhouse:8123`)",
            )?;
            let parsed = url
                .parse::<reqwest::Url>()
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
            if parsed.is_none() {
                bail!(
                    "`storage.clickhouse_url` = `{url}` is not an http(s) URL; write it like `http://clickhouse:8123`"
                );
            }
            let mut options = store::ClickHouseOptions::new(url, &storage.clickhouse_database);
            options.cluster = storage.clickhouse_cluster.clone();
            options.nodes =
                storage.clickhouse_nodes.as_ref().map(OneOrMany::items).unwrap_or_default();
            if options.cluster.is_some() && options.nodes.is_empty() {
                bail!(
                    "`storage.clickhouse_cluster` needs `storage.clickhouse_nodes`: every node's HTTP URL, where spanblame applies its schema and drops old partitions"
                );
            }
            if options.cluster.is_none() && !options.nodes.is_empty() {
                bail!("`storage.clickhouse_nodes` is set without `storage.clickhouse_cluster`");
            }
            options.user = storage.clickhouse_user.clone();
            options.password = match (
                &storage.clickhouse_password_env,
                &storage.clickhouse_password_file,
            ) {
                (None, None) => None,
                (Some(var), None) => Some(env.get(var).cloned().with_context(|| {
                    format!(
                        "`storage.clickhouse_password_env`: environment variable `{var}` is not set"
                    )
                })?),
                (None, Some(file)) => Some(
                    std::fs::read_to_string(file)
                        .with_context(|| {
                            format!(
                                "`storage.clickhouse_password_file`: reading `{}`",
                                file.display()
                            )
                        })?
                        .trim()
                        .to_owned(),
                ),
                (Some(_), Some(_)) => bail!(
                    "`storage`: set one of `clickhouse_password_env` or `clickhouse_password_file`, not both"
                ),
            };
            let timeout = parse_duration_nanos(&storage.clickhouse_timeout).with_context(|| {
                format!("`storage.clickhouse_timeout` = `{}`", storage.clickhouse_timeout)
            })?;
            options.timeout = std::time::Duration::from_nanos(timeout);
            store::clickhouse::validate(&options).map_err(|e| anyhow::anyhow!("`storage`: {e}"))?;
            Ok(store::SpanBackend::ClickHouse(options))
        }
        other => bail!("`storage.kind` = `{other}` is not valid; use `embedded` or `cluster`"),
    }
}
