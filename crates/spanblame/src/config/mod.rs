//! The operator's configuration: one TOML file (optional), every key overridable by an
//! environment variable `SPANBLAME_<SECTION>_<KEY>`, and validation that names the key, the
//! problem and the fix. Secrets are never written in the file: `*_env` keys name an
//! environment variable and `*_file` keys a file that holds the secret.

mod access;
mod changes;
mod detection;
mod listen;
mod notifications;
mod storage;
#[cfg(test)]
mod tests;
mod values;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// Sections that environment overrides may address.
const SECTIONS: &[&str] = &[
    "server",
    "storage",
    "retention",
    "ingest",
    "deploys",
    "mirrors",
    "detection",
    "notifications",
    "auth",
];

/// Tables inside a section that environment overrides may address as
/// `SPANBLAME_<SECTION>_<TABLE>_<KEY>` (`SPANBLAME_AUTH_OIDC_ISSUER`).
const SUBTABLES: &[(&str, &str)] = &[("auth", "oidc"), ("auth", "proxy")];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    pub(crate) server: ServerConfig,
    pub(crate) storage: StorageConfig,
    pub(crate) retention: RetentionConfig,
    pub(crate) ingest: IngestConfig,
    pub(crate) deploys: DeploysConfig,
    pub(crate) mirrors: MirrorsConfig,
    pub(crate) detection: DetectionConfig,
    pub(crate) notifications: NotificationsConfig,
    pub(crate) alerts: AlertsConfig,
    pub(crate) auth: AuthConfig,
    pub(crate) teams: Vec<TeamConfig>,
    pub(crate) integrations: Vec<IntegrationConfig>,
    pub(crate) repositories: Vec<RepositoryConfig>,
    pub(crate) services: Vec<ServiceConfig>,
}

/// Reads the file (if any), applies environment overrides, and parses the result.
pub(crate) fn load(path: Option<&Path>, env: &BTreeMap<String, String>) -> anyhow::Result<Config> {
    let mut table: toml::Table = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file `{}`", path.display()))?;
            toml::from_str(&text).with_context(|| format!("in config file `{}`", path.display()))?
        }
        None => toml::Table::new(),
    };
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("SPANBLAME_") else { continue };
        let rest = rest.to_ascii_lowercase();
        let Some((section, key)) = SECTIONS
            .iter()
            .find_map(|s| rest.strip_prefix(&format!("{s}_")).map(|key| (*s, key.to_owned())))
        else {
            // Other SPANBLAME_* variables hold secrets named by `*_env` keys; not overrides.
            continue;
        };
        // A literal (`true`, `42`) keeps its type; anything else is a string.
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(|v| !v.is_table() && !v.is_array())
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let mut section_table = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("`{section}` in the config must be a table"))?;
        let mut key = key;
        let nested = SUBTABLES.iter().filter(|(s, _)| *s == section).find_map(|(_, sub)| {
            key.strip_prefix(&format!("{sub}_")).map(|rest| (*sub, rest.to_owned()))
        });
        if let Some((sub, rest)) = nested {
            section_table = section_table
                .entry(sub)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .with_context(|| format!("`{section}.{sub}` in the config must be a table"))?;
            key = rest;
        }
        section_table.insert(key, value);
    }
    let source = path.map_or("the environment".to_owned(), |p| format!("`{}`", p.display()));
    Config::deserialize(toml::Value::Table(table))
        .with_context(|| format!("invalid configuration (from {source} and SPANBLAME_* variables)"))
}

/// The config turned into what the server and store take, with every value checked.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) settings: server::Settings,
    pub(crate) data_dir: PathBuf,
    pub(crate) store: store::SpanBackend,
    pub(crate) metadata: store::MetadataBackend,
}

pub(crate) fn resolve(config: &Config, env: &BTreeMap<String, String>) -> anyhow::Result<Resolved> {
    let addr = |key: &str, value: &str| -> anyhow::Result<SocketAddr> {
        value.parse().with_context(|| {
            format!("`server.{key}` = `{value}` is not a socket address; write it like `127.0.0.1:7420` (use `0.0.0.0:PORT` to listen on every interface)")
        })
    };
    let backend = resolve_storage(&config.storage, env)?;
    let metadata = resolve_metadata(&config.storage, env)?;
    let background_lease_nanos = parse_duration_nanos(&config.storage.background_lease)
        .with_context(|| {
            format!("`storage.background_lease` = `{}`", config.storage.background_lease)
        })?;
    if background_lease_nanos < 3_000_000_000 {
        bail!("`storage.background_lease` must be at least 3s (it is renewed every third of it)");
    }
    let spans_max_age_nanos = parse_duration_nanos(&config.retention.spans)
        .with_context(|| format!("`retention.spans` = `{}`", config.retention.spans))?;
    let max_span_future_nanos = parse_duration_nanos(&config.ingest.max_future)
        .with_context(|| format!("`ingest.max_future` = `{}`", config.ingest.max_future))?;
    let disk_budget_bytes = config
        .retention
        .disk_budget
        .as_deref()
        .map(|v| parse_bytes(v).with_context(|| format!("`retention.disk_budget` = `{v}`")))
        .transpose()?;
    let max_body_bytes = parse_bytes(&config.ingest.max_body)
        .with_context(|| format!("`ingest.max_body` = `{}`", config.ingest.max_body))?;
    if config.ingest.max_exports_in_flight == 0 {
        bail!("`ingest.max_exports_in_flight` must be at least 1");
    }
    let max_ingest_memory_bytes = parse_bytes(&config.ingest.max_memory)
        .with_context(|| format!("`ingest.max_memory` = `{}`", config.ingest.max_memory))?;
    if max_ingest_memory_bytes < 2 * max_body_bytes {
        bail!(
            "`ingest.max_memory` = `{}` is less than twice `ingest.max_body` = `{}`: a full body and its decompressed copy would never fit; raise `max_memory` or lower `max_body`",
            config.ingest.max_memory,
            config.ingest.max_body
        );
    }

    let changes = resolve_changes(
        ChangeSections {
            integrations: &config.integrations,
            repositories: &config.repositories,
            services: &config.services,
            mirrors: &config.mirrors,
            data_dir: &config.storage.data_dir,
        },
        env,
    )?;
    let access = resolve_access(
        AccessSections {
            auth: &config.auth,
            teams: &config.teams,
            deploys: &config.deploys,
            ingest: &config.ingest,
            public_url: config.server.public_url.as_deref(),
            audit_retention: &config.retention.audit,
        },
        env,
        &changes,
    )?;
    let detection = resolve_detection(&config.detection, &config.retention)?;
    let notifications = resolve_notifications(
        NotifySections {
            notifications: &config.notifications,
            alerts: &config.alerts,
            integrations: &config.integrations,
            repositories: &config.repositories,
            services: &config.services,
        },
        env,
        &changes,
    )?;

    let limits = otlp::DecodeLimits {
        max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
        max_attributes: config.ingest.max_attributes_per_span,
        max_attribute_value_bytes: config.ingest.max_attribute_value_bytes,
        // Real spans decode to about 5x their protobuf size; tiny-element floods to 40-200x.
        max_decoded_bytes: usize::try_from(max_body_bytes.saturating_mul(8)).unwrap_or(usize::MAX),
        ..otlp::DecodeLimits::default()
    };
    Ok(Resolved {
        settings: server::Settings {
            http_addr: addr("http_addr", &config.server.http_addr)?,
            otlp_grpc_addr: addr("otlp_grpc_addr", &config.server.otlp_grpc_addr)?,
            otlp_http_addr: addr("otlp_http_addr", &config.server.otlp_http_addr)?,
            public_url: config
                .server
                .public_url
                .as_deref()
                .map(|u| u.trim_end_matches('/').to_owned()),
            limits,
            access,
            max_exports_in_flight: config.ingest.max_exports_in_flight,
            max_ingest_memory_bytes: usize::try_from(max_ingest_memory_bytes).unwrap_or(usize::MAX),
            max_span_future_nanos,
            retention: server::Retention { spans_max_age_nanos, disk_budget_bytes },
            changes,
            detection,
            notifications,
            background_lease: std::time::Duration::from_nanos(background_lease_nanos),
            connections: resolve_connections(&config.server)?,
        },
        data_dir: config.storage.data_dir.clone(),
        store: backend,
        metadata,
    })
}

use access::{AccessSections, resolve_access};
use changes::{ChangeSections, resolve_changes};
use detection::resolve_detection;
use listen::resolve_connections;
use notifications::{NotifySections, resolve_notifications};
use storage::{resolve_metadata, resolve_storage};

pub(crate) use access::{AuthConfig, DeploysConfig, TeamConfig, open_doors};
pub(crate) use changes::{IntegrationConfig, MirrorsConfig, RepositoryConfig, ServiceConfig};
pub(crate) use detection::DetectionConfig;
pub(crate) use listen::{IngestConfig, ServerConfig};
pub(crate) use notifications::{AlertsConfig, NotificationsConfig};
pub(crate) use storage::{RetentionConfig, StorageConfig};
pub(crate) use values::{parse_bytes, parse_duration_nanos};
