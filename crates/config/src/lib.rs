//! The operator's configuration: one TOML file (optional), every key overridable by an
//! environment variable `SPANBLAME_<SECTION>_<KEY>`, and validation that names the key, the
//! problem and the fix. Secrets are never written in the file: `*_env` keys name an
//! environment variable and `*_file` keys a file that holds the secret.
//!
//! One module per section, each with its types beside its validation: `storage` (`[storage]`,
//! `[retention]`), `listen` (`[server]`, `[ingest]`), `access` (`[auth]`, `[[teams]]`,
//! `[deploys]`, `[[tokens]]`), `changes` (`[[integrations]]`, `[[repositories]]`,
//! `[[services]]`, `[mirrors]`), `detection`, `notifications` (`[notifications]`,
//! `[[alerts.*]]`), `span_metrics`; `values` reads durations, sizes and secrets;
//! `reference` writes `docs/configuration.md` from these types.
//!
//! May depend on: `server` (the settings it builds) and the crates whose settings it fills.
//! **Never:** start anything: it reads text and the environment, and answers settings or an
//! error.

mod access;
mod changes;
mod detection;
mod listen;
mod notifications;
pub mod reference;
mod span_metrics;
mod storage;
#[cfg(test)]
mod tests;
mod values;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Sections that environment overrides may address.
const SECTIONS: &[&str] = &[
    "server",
    "storage",
    "retention",
    "ingest",
    "deploys",
    "mirrors",
    "gate",
    "detection",
    "notifications",
    "auth",
    "span_metrics",
];

/// Tables inside a section that environment overrides may address as
/// `SPANBLAME_<SECTION>_<TABLE>_<KEY>` (`SPANBLAME_AUTH_OIDC_ISSUER`).
const SUBTABLES: &[(&str, &str)] = &[("auth", "oidc"), ("auth", "proxy")];

/// spanblame's configuration, as `spanblame serve --config FILE` reads it.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub retention: RetentionConfig,
    pub ingest: IngestConfig,
    pub deploys: DeploysConfig,
    pub mirrors: MirrorsConfig,
    pub gate: GateConfig,
    pub detection: DetectionConfig,
    pub notifications: NotificationsConfig,
    pub alerts: AlertsConfig,
    pub auth: AuthConfig,
    pub teams: Vec<TeamConfig>,
    pub integrations: Vec<IntegrationConfig>,
    pub repositories: Vec<RepositoryConfig>,
    pub services: Vec<ServiceConfig>,
    pub span_metrics: SpanMetricsConfig,
}

/// Reads the file (if any), applies environment overrides, and parses the result.
pub fn load(path: Option<&Path>, env: &BTreeMap<String, String>) -> anyhow::Result<Config> {
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
pub struct Resolved {
    pub settings: server::Settings,
    pub data_dir: PathBuf,
    pub store: store::SpanBackend,
    pub metadata: store::MetadataBackend,
}

pub fn resolve(config: &Config, env: &BTreeMap<String, String>) -> anyhow::Result<Resolved> {
    // Every section is checked even after one fails, so one run names every problem.
    let mut problems = Problems::default();
    let addr = |key: &str, value: &str| -> anyhow::Result<SocketAddr> {
        value.parse().with_context(|| {
            format!("`server.{key}` = `{value}` is not a socket address; write it like `127.0.0.1:7420` (use `0.0.0.0:PORT` to listen on every interface)")
        })
    };
    let backend = problems.take(resolve_storage(&config.storage, env));
    let metadata = problems.take(resolve_metadata(&config.storage, env));
    let background_lease_nanos = problems
        .take(parse_duration_nanos(&config.storage.background_lease).with_context(|| {
            format!("`storage.background_lease` = `{}`", config.storage.background_lease)
        }))
        .filter(|nanos| {
            problems.check(
                *nanos >= 3_000_000_000,
                "`storage.background_lease` must be at least 3s (it is renewed every third of it)",
            )
        });
    let spans_max_age_nanos = problems.take(
        parse_duration_nanos(&config.retention.spans)
            .with_context(|| format!("`retention.spans` = `{}`", config.retention.spans)),
    );
    let max_span_future_nanos = problems.take(
        parse_duration_nanos(&config.ingest.max_future)
            .with_context(|| format!("`ingest.max_future` = `{}`", config.ingest.max_future)),
    );
    let disk_budget_bytes = problems.take(
        config
            .retention
            .disk_budget
            .as_deref()
            .map(|v| parse_bytes(v).with_context(|| format!("`retention.disk_budget` = `{v}`")))
            .transpose(),
    );
    let max_body_bytes = problems.take(
        parse_bytes(&config.ingest.max_body)
            .with_context(|| format!("`ingest.max_body` = `{}`", config.ingest.max_body)),
    );
    problems.check(
        config.ingest.max_exports_in_flight > 0,
        "`ingest.max_exports_in_flight` must be at least 1",
    );
    let max_ingest_memory_bytes = problems.take(
        parse_bytes(&config.ingest.max_memory)
            .with_context(|| format!("`ingest.max_memory` = `{}`", config.ingest.max_memory)),
    );
    if let (Some(memory), Some(body)) = (max_ingest_memory_bytes, max_body_bytes) {
        problems.check(
            memory >= 2 * body,
            &format!(
                "`ingest.max_memory` = `{}` is less than twice `ingest.max_body` = `{}`: a full body and its decompressed copy would never fit; raise `max_memory` or lower `max_body`",
                config.ingest.max_memory, config.ingest.max_body
            ),
        );
    }

    let changes = problems.take(resolve_changes(
        ChangeSections {
            integrations: &config.integrations,
            repositories: &config.repositories,
            services: &config.services,
            mirrors: &config.mirrors,
            gate: &config.gate,
            data_dir: &config.storage.data_dir,
        },
        env,
    ));
    // Access and notifications are checked against the change graph; without one (it has
    // its own problems), against none, so their own keys are still checked.
    let graph = changes.clone().unwrap_or_default();
    let access = problems.take(resolve_access(
        AccessSections {
            auth: &config.auth,
            teams: &config.teams,
            deploys: &config.deploys,
            ingest: &config.ingest,
            public_url: config.server.public_url.as_deref(),
            audit_retention: &config.retention.audit,
        },
        env,
        &graph,
    ));
    let detection = problems.take(resolve_detection(&config.detection, &config.retention));
    let notifications = problems.take(resolve_notifications(
        NotifySections {
            notifications: &config.notifications,
            alerts: &config.alerts,
            integrations: &config.integrations,
            repositories: &config.repositories,
            services: &config.services,
        },
        env,
        &graph,
    ));
    let http_addr = problems.take(addr("http_addr", &config.server.http_addr));
    let otlp_grpc_addr = problems.take(addr("otlp_grpc_addr", &config.server.otlp_grpc_addr));
    let otlp_http_addr = problems.take(addr("otlp_http_addr", &config.server.otlp_http_addr));
    let zipkin_addr = problems.take(addr("zipkin_addr", &config.server.zipkin_addr));
    let connections = problems.take(resolve_connections(&config.server));
    let span_metrics = problems.take(resolve_span_metrics(&config.span_metrics));
    problems.finish()?;

    // No problems: every part resolved.
    let resolved = "INVARIANT: with no problems, every part resolved";
    let max_body_bytes = max_body_bytes.expect(resolved);
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
            http_addr: http_addr.expect(resolved),
            otlp_grpc_addr: otlp_grpc_addr.expect(resolved),
            otlp_http_addr: otlp_http_addr.expect(resolved),
            zipkin_addr: zipkin_addr.expect(resolved),
            public_url: config
                .server
                .public_url
                .as_deref()
                .map(|u| u.trim_end_matches('/').to_owned()),
            limits,
            access: access.expect(resolved),
            max_exports_in_flight: config.ingest.max_exports_in_flight,
            max_ingest_memory_bytes: usize::try_from(max_ingest_memory_bytes.expect(resolved))
                .unwrap_or(usize::MAX),
            max_span_future_nanos: max_span_future_nanos.expect(resolved),
            retention: server::Retention {
                spans_max_age_nanos: spans_max_age_nanos.expect(resolved),
                disk_budget_bytes: disk_budget_bytes.expect(resolved),
            },
            changes: changes.expect(resolved),
            detection: detection.expect(resolved),
            notifications: notifications.expect(resolved),
            background_lease: std::time::Duration::from_nanos(
                background_lease_nanos.expect(resolved),
            ),
            connections: connections.expect(resolved),
            span_metrics: span_metrics.expect(resolved),
        },
        data_dir: config.storage.data_dir.clone(),
        store: backend.expect(resolved),
        metadata: metadata.expect(resolved),
    })
}

/// The problems found so far; the configuration is refused with all of them at once.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    /// The value, or `None` with its error noted.
    fn take<T>(&mut self, result: anyhow::Result<T>) -> Option<T> {
        result.map_err(|e| self.0.push(format!("{e:#}"))).ok()
    }

    /// Notes `problem` unless `ok`; returns `ok`.
    fn check(&mut self, ok: bool, problem: &str) -> bool {
        if !ok {
            self.0.push(problem.to_owned());
        }
        ok
    }

    fn finish(self) -> anyhow::Result<()> {
        match self.0.as_slice() {
            [] => Ok(()),
            [one] => bail!("{one}"),
            all => {
                bail!("{} problems in the configuration:\n  - {}", all.len(), all.join("\n  - "))
            }
        }
    }
}

use access::{AccessSections, resolve_access};
use changes::{ChangeSections, resolve_changes};
use detection::resolve_detection;
use listen::resolve_connections;
use notifications::{NotifySections, resolve_notifications};
use span_metrics::{SpanMetricsConfig, resolve_span_metrics};
use storage::{resolve_metadata, resolve_storage};

pub use access::{AuthConfig, DeploysConfig, TeamConfig, open_doors};
pub use changes::{GateConfig, IntegrationConfig, MirrorsConfig, RepositoryConfig, ServiceConfig};
pub use detection::DetectionConfig;
pub use listen::{IngestConfig, ServerConfig};
pub use notifications::{AlertsConfig, NotificationsConfig};
pub use storage::{RetentionConfig, StorageConfig};
pub use values::{parse_bytes, parse_duration_nanos};
