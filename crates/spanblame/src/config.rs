//! The operator's configuration: one TOML file (optional), every key overridable by an
//! environment variable `SPANBLAME_<SECTION>_<KEY>`, and validation that names the key, the
//! problem and the fix. Secrets are never written in the file: `*_env` keys name an
//! environment variable and `*_file` keys a file that holds the secret.

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

/// Sign-in, roles, tokens and sessions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AuthConfig {
    /// `none` (no sign-in: whoever reaches the server is its operator; loopback by default),
    /// `oidc` or `proxy`.
    pub(crate) mode: String,
    /// Clock-skew tolerance for signed tokens.
    pub(crate) clock_skew: String,
    pub(crate) session_max_age: String,
    /// Default lifetime of new API tokens.
    pub(crate) token_max_age: String,
    /// How long a rotated token's old secret stays valid.
    pub(crate) token_rotation_grace: String,
    /// Sign-in and token requests per client address per minute.
    pub(crate) rate_limit_per_minute: u32,
    pub(crate) oidc: Option<OidcConfig>,
    pub(crate) proxy: Option<ProxyConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: "none".into(),
            clock_skew: "60s".into(),
            session_max_age: "12h".into(),
            token_max_age: "90d".into(),
            token_rotation_grace: "24h".into(),
            rate_limit_per_minute: 30,
            oidc: None,
            proxy: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OidcConfig {
    pub(crate) issuer: String,
    pub(crate) client_id: String,
    pub(crate) client_secret_env: Option<String>,
    pub(crate) client_secret_file: Option<PathBuf>,
    /// Scopes asked for at sign-in besides `openid`.
    #[serde(default = "default_scopes")]
    pub(crate) scopes: Vec<String>,
    /// Audiences accepted on bearer tokens besides `client_id` (an API's resource audience).
    #[serde(default)]
    pub(crate) audiences: Vec<String>,
    #[serde(default = "default_groups_claim")]
    pub(crate) groups_claim: String,
    #[serde(default)]
    pub(crate) admin_groups: Vec<String>,
    #[serde(default)]
    pub(crate) oncall_lead_groups: Vec<String>,
    #[serde(default)]
    pub(crate) auditor_groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxyConfig {
    pub(crate) assertion_header: String,
    pub(crate) jwks_url: String,
    pub(crate) issuer: String,
    pub(crate) audience: String,
    #[serde(default = "default_groups_claim")]
    pub(crate) groups_claim: String,
    #[serde(default)]
    pub(crate) admin_groups: Vec<String>,
    #[serde(default)]
    pub(crate) oncall_lead_groups: Vec<String>,
    #[serde(default)]
    pub(crate) auditor_groups: Vec<String>,
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile", "groups"].map(str::to_owned).to_vec()
}

fn default_groups_claim() -> String {
    "groups".into()
}

/// A team: who belongs to it (identity-provider groups); services name their team.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TeamConfig {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) oidc_groups: Vec<String>,
}

/// Who may report deploys through `POST /api/v1/deploys` (and `spanblame deploy`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DeploysConfig {
    /// Unset: open only while `auth.mode` is `none` (with sign-in, a `deploy` token is needed).
    pub(crate) require_auth: Option<bool>,
    pub(crate) tokens: Vec<TokenConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MirrorsConfig {
    /// How often every mirror is fetched (pushes announced by webhooks fetch at once).
    pub(crate) fetch_interval: String,
}

impl Default for MirrorsConfig {
    fn default() -> Self {
        MirrorsConfig { fetch_interval: "5m".into() }
    }
}

/// How deploys are judged (defaults from research/change-intelligence.md §B).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DetectionConfig {
    pub(crate) enabled: bool,
    /// How often open deploys are looked at again.
    pub(crate) interval: String,
    /// The window before a deploy that a full rollout is compared with.
    pub(crate) before_window: String,
    /// False-positive level per deploy, over all its operations and looks.
    pub(crate) alpha: f64,
    pub(crate) min_effect_p50: f64,
    pub(crate) min_effect_p95: f64,
    pub(crate) min_effect_p99: f64,
    /// The smallest latency change worth reporting, absolute.
    pub(crate) min_delta: String,
    pub(crate) min_samples_p50: u64,
    pub(crate) min_samples_p95: u64,
    pub(crate) min_samples_p99: u64,
    pub(crate) min_errors: u64,
    pub(crate) min_error_requests: u64,
    pub(crate) min_error_rate_delta: f64,
    pub(crate) min_error_rate_effect: f64,
    pub(crate) min_new_error_count: u64,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        let t = analysis::Thresholds::default();
        DetectionConfig {
            enabled: true,
            interval: "1m".into(),
            before_window: "1h".into(),
            alpha: t.alpha,
            min_effect_p50: t.min_effect_p50,
            min_effect_p95: t.min_effect_p95,
            min_effect_p99: t.min_effect_p99,
            min_delta: "5ms".into(),
            min_samples_p50: t.min_samples_p50,
            min_samples_p95: t.min_samples_p95,
            min_samples_p99: t.min_samples_p99,
            min_errors: t.min_errors,
            min_error_requests: t.min_error_requests,
            min_error_rate_delta: t.min_error_rate_delta,
            min_error_rate_effect: t.min_error_rate_effect,
            min_new_error_count: t.min_new_error_count,
        }
    }
}

/// How notifications are delivered.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct NotificationsConfig {
    /// Attempts before a delivery is dead-lettered (visible in the API and the finding page).
    pub(crate) max_attempts: u32,
    /// The first retry's wait; it doubles (with jitter) up to `max_backoff`.
    pub(crate) initial_backoff: String,
    pub(crate) max_backoff: String,
    /// How often a firing alert is sent to Alertmanager again.
    pub(crate) alert_refresh: String,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            max_attempts: 12,
            initial_backoff: "10s".into(),
            max_backoff: "30m".into(),
            alert_refresh: "15m".into(),
        }
    }
}

/// Where alerts go: `[[alerts.alertmanager]]` and `[[alerts.webhook]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AlertsConfig {
    pub(crate) alertmanager: Vec<SinkConfig>,
    pub(crate) webhook: Vec<SinkConfig>,
}

/// One alert receiver: its URL in the file, or (for URLs that hold a secret, like a Slack
/// webhook) in an environment variable or a file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SinkConfig {
    /// Names it in the outbox and the API (default: `default`, `2`, `3`... by position).
    pub(crate) name: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) url_env: Option<String>,
    pub(crate) url_file: Option<PathBuf>,
}

/// A forge that sends webhooks to `/hooks/{kind}/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IntegrationConfig {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) secret_env: Option<String>,
    pub(crate) secret_file: Option<PathBuf>,
    /// The forge's base URL for API calls (Phabricator: `https://phab.example.com`).
    pub(crate) api_url: Option<String>,
    pub(crate) api_token_env: Option<String>,
    pub(crate) api_token_file: Option<PathBuf>,
    /// Comment on the suspect's review (or commit) when a deploy regresses and when it is
    /// resolved; needs `api_url` and an API token.
    #[serde(default)]
    pub(crate) comment_on_findings: bool,
    /// Set a commit status on the suspect commit (Gitea/Forgejo, GitHub, GitLab).
    #[serde(default)]
    pub(crate) status_on_findings: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RepositoryConfig {
    pub(crate) name: String,
    /// Clone URL (mirrored under the data directory) or browser URL.
    pub(crate) url: Option<String>,
    /// An existing repository on this machine, read in place instead of cloning `url`.
    pub(crate) path: Option<PathBuf>,
    /// Set to false to match webhooks by `url` without cloning it.
    #[serde(default = "yes")]
    pub(crate) mirror: bool,
    /// An environment variable holding `user:token` for cloning over HTTP(S).
    pub(crate) credentials_env: Option<String>,
    pub(crate) web_url: Option<String>,
    /// The forge kind, for link formats.
    pub(crate) forge: Option<String>,
    /// Phabricator: the repository's monogram (`rCALLSIGN` or `R12`), for commit links.
    pub(crate) monogram: Option<String>,
    /// The `[[integrations]]` entry it lives on, where findings are posted back.
    pub(crate) integration: Option<String>,
    /// Its `owner/name` on that forge (GitLab: the full project path); derived from `url`
    /// when it is under the forge's address.
    pub(crate) forge_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceConfig {
    pub(crate) name: String,
    pub(crate) repository: Option<String>,
    pub(crate) path_prefix: Option<String>,
    pub(crate) team: Option<String>,
    /// 1 is the most critical; alert severities depend on it (default 2).
    pub(crate) tier: Option<u8>,
    /// Set to false to keep this service's findings off reviews and commit statuses.
    pub(crate) comment_on_findings: Option<bool>,
    /// Set to false to send no alerts for this service.
    pub(crate) alerts: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ServerConfig {
    pub(crate) http_addr: String,
    pub(crate) otlp_grpc_addr: String,
    pub(crate) otlp_http_addr: String,
    pub(crate) public_url: Option<String>,
    pub(crate) max_connections: usize,
    pub(crate) header_read_timeout: String,
    pub(crate) body_read_timeout: String,
    pub(crate) idle_timeout: String,
    pub(crate) shutdown_grace: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let limits = server::ConnectionLimits::default();
        let secs = |d: std::time::Duration| format!("{}s", d.as_secs());
        ServerConfig {
            http_addr: "127.0.0.1:7420".into(),
            otlp_grpc_addr: "127.0.0.1:4317".into(),
            otlp_http_addr: "127.0.0.1:4318".into(),
            public_url: None,
            max_connections: limits.max_connections,
            header_read_timeout: secs(limits.header_read_timeout),
            body_read_timeout: secs(limits.body_read_timeout),
            idle_timeout: secs(limits.idle_timeout),
            shutdown_grace: secs(limits.shutdown_grace),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct StorageConfig {
    /// `embedded` (one data directory) or `cluster` (spans and sketches in ClickHouse).
    pub(crate) kind: String,
    pub(crate) data_dir: PathBuf,
    /// `always` (fsync before acknowledging) or `never` (benchmarks and throwaway demos).
    pub(crate) wal_sync: String,
    /// `embedded`: spans held in memory before they are sealed into a block (memory against
    /// the number of small blocks).
    pub(crate) head_spans: usize,
    /// `embedded`: compaction merges runs of blocks smaller than half of this into blocks of
    /// up to this many spans.
    pub(crate) block_spans: usize,
    /// `cluster`: ClickHouse's HTTP interface, e.g. `http://clickhouse:8123`.
    pub(crate) clickhouse_url: Option<String>,
    pub(crate) clickhouse_database: String,
    /// A cluster from the servers' `remote_servers`: tables become `Distributed`.
    pub(crate) clickhouse_cluster: Option<String>,
    /// With `clickhouse_cluster`: every node's HTTP URL (a list, or comma-separated).
    pub(crate) clickhouse_nodes: Option<OneOrMany>,
    pub(crate) clickhouse_user: Option<String>,
    pub(crate) clickhouse_password_env: Option<String>,
    pub(crate) clickhouse_password_file: Option<PathBuf>,
    pub(crate) clickhouse_timeout: String,
    /// `cluster`: PostgreSQL for metadata, shared by every replica (without it, metadata
    /// stays in `data_dir` and only one replica may run). The URL holds the password, so it
    /// comes from an environment variable or a file.
    pub(crate) postgres_url_env: Option<String>,
    pub(crate) postgres_url_file: Option<PathBuf>,
    pub(crate) postgres_max_connections: usize,
    pub(crate) postgres_timeout: String,
    /// How long a replica holds the background jobs' lease without renewing it: after a
    /// replica dies, another takes the jobs over within this time.
    pub(crate) background_lease: String,
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
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RetentionConfig {
    pub(crate) spans: String,
    pub(crate) disk_budget: Option<String>,
    /// Latency sketches (what detection and charts read) ...
    pub(crate) sketches: String,
    /// ... kept per minute this long, then per hour.
    pub(crate) sketch_minutes: String,
    /// The audit log, independent of span retention.
    pub(crate) audit: String,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct IngestConfig {
    pub(crate) require_auth: bool,
    pub(crate) tokens: Vec<TokenConfig>,
    pub(crate) max_body: String,
    pub(crate) max_attributes_per_span: usize,
    pub(crate) max_attribute_value_bytes: usize,
    pub(crate) max_exports_in_flight: usize,
    pub(crate) max_memory: String,
    pub(crate) max_future: String,
}

impl Default for IngestConfig {
    fn default() -> Self {
        let limits = otlp::DecodeLimits::default();
        IngestConfig {
            require_auth: false,
            tokens: Vec::new(),
            max_body: "16MiB".into(),
            max_attributes_per_span: limits.max_attributes,
            max_attribute_value_bytes: limits.max_attribute_value_bytes,
            max_exports_in_flight: 256,
            max_memory: "512MiB".into(),
            max_future: "1h".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenConfig {
    pub(crate) name: String,
    pub(crate) secret_env: Option<String>,
    pub(crate) secret_file: Option<PathBuf>,
}

/// `[server]`'s connection caps and timeouts.
fn resolve_connections(server: &ServerConfig) -> anyhow::Result<server::ConnectionLimits> {
    let duration = |key: &str, value: &str| -> anyhow::Result<std::time::Duration> {
        let nanos =
            parse_duration_nanos(value).with_context(|| format!("`server.{key}` = `{value}`"))?;
        if nanos == 0 {
            bail!("`server.{key}` must be more than 0s");
        }
        Ok(std::time::Duration::from_nanos(nanos))
    };
    if server.max_connections == 0 {
        bail!("`server.max_connections` must be at least 1");
    }
    Ok(server::ConnectionLimits {
        max_connections: server.max_connections,
        header_read_timeout: duration("header_read_timeout", &server.header_read_timeout)?,
        body_read_timeout: duration("body_read_timeout", &server.body_read_timeout)?,
        idle_timeout: duration("idle_timeout", &server.idle_timeout)?,
        shutdown_grace: duration("shutdown_grace", &server.shutdown_grace)?,
    })
}

/// Doors left open although sign-in is configured, each with what it exposes and the fix
/// (`serve` and `check-config` warn with them).
pub(crate) fn open_doors(access: &server::AccessSettings) -> Vec<&'static str> {
    if matches!(access.mode, server::AuthMode::None) {
        return Vec::new();
    }
    let mut doors = Vec::new();
    if access.ingest_open {
        doors.push(
            "sign-in is configured but `ingest.require_auth` is false: anyone who reaches the OTLP ports may send spans of any service (a token's service restriction applies only to tokens sent); set `[ingest] require_auth = true` and give collectors `ingest` tokens",
        );
    }
    if access.deploys_open {
        doors.push(
            "sign-in is configured but `deploys.require_auth` is false: anyone who reaches the API may report deploys, which feed detection; set `[deploys] require_auth = true` (the default with sign-in) and give CI a `deploy` token",
        );
    }
    doors
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

    let changes = resolve_changes(config, env)?;
    let access = resolve_access(config, env, &changes)?;
    let detection = resolve_detection(config)?;
    let notifications = resolve_notifications(config, env, &changes)?;

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

/// `[storage]`'s metadata: SQLite in the data directory, or PostgreSQL (cluster only).
fn resolve_metadata(
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
fn resolve_storage(
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

fn yes() -> bool {
    true
}

/// The tokens of one `[[<section>.tokens]]` list, each with `scope`; an error when
/// `require_auth` is set without any (nothing could ever authenticate, unless API tokens are
/// created later, which is fine: then the list may be empty).
fn configured_tokens(
    section: &str,
    scope: auth::Scope,
    tokens: &[TokenConfig],
    env: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<server::ConfiguredToken>> {
    tokens
        .iter()
        .enumerate()
        .map(|(idx, token)| {
            let key = format!("`{section}.tokens[{idx}]` (`{}`)", token.name);
            let secret =
                read_secret(&key, token.secret_env.as_deref(), token.secret_file.as_deref(), env)?;
            Ok(server::ConfiguredToken {
                name: token.name.clone(),
                scope,
                sha256: auth::token::digest(&secret),
            })
        })
        .collect()
}

/// Sign-in, role mapping, tokens and sessions, checked.
fn resolve_access(
    config: &Config,
    env: &BTreeMap<String, String>,
    changes: &server::ChangeSettings,
) -> anyhow::Result<server::AccessSettings> {
    let auth = &config.auth;
    let duration = |key: &str, value: &str| {
        parse_duration_nanos(value).with_context(|| format!("`auth.{key}` = `{value}`"))
    };
    let mut configured =
        configured_tokens("ingest", auth::Scope::Ingest, &config.ingest.tokens, env)?;
    configured.extend(configured_tokens(
        "deploys",
        auth::Scope::Deploy,
        &config.deploys.tokens,
        env,
    )?);
    let url = |key: &str, value: &str| -> anyhow::Result<String> {
        let value = value.trim().trim_end_matches('/');
        if value.starts_with("https://") || value.starts_with("http://") {
            Ok(value.to_owned())
        } else {
            bail!("`{key}` = `{value}` must be an `https://` URL")
        }
    };
    // How the identity's groups map to roles; teams come from `[[teams]]`.
    let groups_mapping = |claim: &str, admin: &[String], lead: &[String], auditor: &[String]| {
        auth::IdentityMapping {
            groups_claim: claim.to_owned(),
            admin_groups: admin.to_vec(),
            oncall_lead_groups: lead.to_vec(),
            auditor_groups: auditor.to_vec(),
            teams: config.teams.iter().map(|t| (t.name.clone(), t.oidc_groups.clone())).collect(),
        }
    };
    let (mode, identity) = match auth.mode.as_str() {
        "none" => (server::AuthMode::None, groups_mapping("groups", &[], &[], &[])),
        "oidc" => {
            let oidc = auth.oidc.as_ref().context(
                "`auth.mode` = `oidc` needs an `[auth.oidc]` table with `issuer`, `client_id` and `client_secret_env`",
            )?;
            let client_secret = read_secret(
                "`auth.oidc` client secret",
                oidc.client_secret_env.as_deref(),
                oidc.client_secret_file.as_deref(),
                env,
            )?;
            if oidc.client_id.trim().is_empty() {
                bail!(
                    "`auth.oidc.client_id` must not be empty: use the client id registered with the provider"
                );
            }
            (
                server::AuthMode::Oidc(server::OidcSettings {
                    issuer: url("auth.oidc.issuer", &oidc.issuer)?,
                    client_id: oidc.client_id.clone(),
                    client_secret,
                    scopes: oidc.scopes.clone(),
                    audiences: oidc.audiences.clone(),
                }),
                groups_mapping(
                    &oidc.groups_claim,
                    &oidc.admin_groups,
                    &oidc.oncall_lead_groups,
                    &oidc.auditor_groups,
                ),
            )
        }
        "proxy" => {
            let proxy = auth.proxy.as_ref().context(
                "`auth.mode` = `proxy` needs an `[auth.proxy]` table with `assertion_header`, `jwks_url`, `issuer` and `audience`",
            )?;
            let header = proxy.assertion_header.trim().to_ascii_lowercase();
            if axum_header_name_invalid(&header) {
                bail!(
                    "`auth.proxy.assertion_header` = `{}` is not an HTTP header name",
                    proxy.assertion_header
                );
            }
            if proxy.audience.trim().is_empty() || proxy.issuer.trim().is_empty() {
                bail!(
                    "`auth.proxy.issuer` and `auth.proxy.audience` must be set exactly as the proxy signs them"
                );
            }
            (
                server::AuthMode::Proxy(server::ProxySettings {
                    assertion_header: header,
                    jwks_url: url("auth.proxy.jwks_url", &proxy.jwks_url)?,
                    issuer: proxy.issuer.trim().to_owned(),
                    audience: proxy.audience.trim().to_owned(),
                }),
                groups_mapping(
                    &proxy.groups_claim,
                    &proxy.admin_groups,
                    &proxy.oncall_lead_groups,
                    &proxy.auditor_groups,
                ),
            )
        }
        other => bail!("`auth.mode` = `{other}` is not valid; use `none`, `oidc` or `proxy`"),
    };
    for service in &changes.services {
        if let Some(team) = &service.team
            && !config.teams.is_empty()
            && !config.teams.iter().any(|t| &t.name == team)
        {
            bail!(
                "`services` (`{}`): `team` = `{team}` is not a configured `[[teams]]` name",
                service.service
            );
        }
    }
    let secure_cookies = match config.server.public_url.as_deref() {
        Some(url) => match url.strip_prefix("http://") {
            // Browsers keep `Secure` cookies on plain HTTP only for loopback.
            Some(rest) => ["127.0.0.1", "localhost", "[::1]"].iter().any(|h| rest.starts_with(h)),
            None => true,
        },
        None => true,
    };
    let nanos_secs = |n: u64| n / 1_000_000_000;
    let deploys_open = match config.deploys.require_auth {
        Some(require) => !require,
        None => matches!(mode, server::AuthMode::None),
    };
    Ok(server::AccessSettings {
        mode,
        ingest_open: !config.ingest.require_auth,
        // A deploy report returns the service's commit history: with sign-in configured it
        // needs a `deploy` token unless the operator opens it explicitly.
        deploys_open,
        configured_tokens: configured,
        identity,
        leeway_secs: nanos_secs(duration("clock_skew", &auth.clock_skew)?),
        session_max_age_nanos: duration("session_max_age", &auth.session_max_age)?,
        token_default_max_age_nanos: duration("token_max_age", &auth.token_max_age)?,
        token_rotation_grace_nanos: duration("token_rotation_grace", &auth.token_rotation_grace)?,
        audit_max_age_nanos: parse_duration_nanos(&config.retention.audit)
            .with_context(|| format!("`retention.audit` = `{}`", config.retention.audit))?,
        secure_cookies,
        rate_limit_per_minute: auth.rate_limit_per_minute,
    })
}

fn axum_header_name_invalid(name: &str) -> bool {
    name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A secret named by `secret_env` or `secret_file` (exactly one), at least 16 characters.
fn read_secret(
    key: &str,
    secret_env: Option<&str>,
    secret_file: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<String> {
    let secret = match (secret_env, secret_file) {
        (Some(var), None) => env.get(var).cloned().with_context(|| {
            format!("{key}: environment variable `{var}` named by `secret_env` is not set")
        })?,
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("{key}: reading `secret_file` `{}`", file.display()))?
            .trim()
            .to_owned(),
        _ => bail!("{key}: set exactly one of `secret_env` or `secret_file`"),
    };
    if secret.len() < 16 {
        bail!(
            "{key}: the secret is shorter than 16 characters; use a long random value (e.g. `openssl rand -hex 32`)"
        );
    }
    Ok(secret)
}

/// Integrations, repositories and service ownership, checked against each other.
fn resolve_changes(
    config: &Config,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<server::ChangeSettings> {
    let kind = |key: &str, name: &str| {
        model::ForgeKind::parse(name).with_context(|| {
            format!("{key} = `{name}` is not a forge kind; use gogs, gitea, forgejo, github, gitlab or phabricator")
        })
    };
    let mut integrations = Vec::new();
    for (idx, integration) in config.integrations.iter().enumerate() {
        let key = format!("`integrations[{idx}]` (`{}`)", integration.name);
        if integration.name.is_empty()
            || !integration
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bail!(
                "{key}: `name` must be letters, digits, `-` or `_` (it appears in the webhook URL)"
            );
        }
        let kind = kind(&format!("{key}: `kind`"), &integration.kind)?;
        if integrations
            .iter()
            .any(|i: &server::Integration| i.name == integration.name && i.kind == kind)
        {
            bail!("{key}: another `{kind}` integration has the same name");
        }
        let secret = read_secret(
            &key,
            integration.secret_env.as_deref(),
            integration.secret_file.as_deref(),
            env,
        )?;
        if kind == model::ForgeKind::Gitlab
            && let Some(signing_key) = secret.strip_prefix("whsec_")
            && forge::standard_webhook_signature(signing_key, "id", "0", b"").is_none()
        {
            bail!(
                "{key}: the secret starts with `whsec_` (a GitLab signing token) but the rest is not base64; copy the signing token exactly as GitLab shows it"
            );
        }
        let api_token = match (&integration.api_token_env, &integration.api_token_file) {
            (None, None) => None,
            (env_var, file) => Some(read_secret(
                &format!("{key}: api token"),
                env_var.as_deref(),
                file.as_deref(),
                env,
            )?),
        };
        let api_url =
            integration.api_url.as_deref().map(str::trim).map(|url| url.trim_end_matches('/'));
        if let Some(url) = api_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            bail!("{key}: `api_url` = `{url}` must start with `https://` (or `http://`)");
        }
        if api_token.is_some() != api_url.is_some() {
            bail!(
                "{key}: set both `api_url` and `api_token_env` (or `api_token_file`), or neither"
            );
        }
        if kind == model::ForgeKind::Phabricator && api_token.is_none() {
            bail!(
                "{key}: a Phabricator integration needs `api_url` (the install's base URL) and `api_token_env` (a Conduit API token, `api-...`): Herald webhooks carry only PHIDs, which spanblame fetches through Conduit"
            );
        }
        integrations.push(server::Integration {
            name: integration.name.clone(),
            kind,
            secret: secret.into_bytes(),
            api_url: api_url.map(str::to_owned),
            api_token,
        });
    }
    let mut repositories = Vec::new();
    for (idx, repository) in config.repositories.iter().enumerate() {
        let key = format!("`repositories[{idx}]` (`{}`)", repository.name);
        if repository.name.trim().is_empty() {
            bail!("`repositories[{idx}]`: `name` must not be empty");
        }
        let forge = repository
            .forge
            .as_deref()
            .map(|name| kind(&format!("{key}: `forge`"), name))
            .transpose()?;
        let mirror = match (&repository.path, &repository.url) {
            (Some(path), _) => Some(server::MirrorSource::Path(path.clone())),
            (None, Some(url)) if repository.mirror => {
                Some(server::MirrorSource::Clone(match &repository.credentials_env {
                    Some(var) => {
                        let credentials = env.get(var).with_context(|| {
                            format!("{key}: environment variable `{var}` named by `credentials_env` is not set")
                        })?;
                        with_credentials(url, credentials).with_context(|| {
                            format!(
                                "{key}: `credentials_env` needs an `http://` or `https://` `url`"
                            )
                        })?
                    }
                    None => url.clone(),
                }))
            }
            _ => None,
        };
        if let Some(monogram) = &repository.monogram
            && forge::conduit::RepositoryMonogram::parse(monogram).is_none()
        {
            bail!(
                "{key}: `monogram` = `{monogram}` is not a Phabricator repository monogram; use `r` and the callsign (`rWEB`) or `R` and the id (`R12`)"
            );
        }
        repositories.push(server::RepositorySettings {
            name: repository.name.clone(),
            url: repository.url.clone(),
            web_url: repository.web_url.clone(),
            forge,
            mirror,
            monogram: repository.monogram.clone(),
        });
    }
    let mut services = Vec::new();
    for (idx, service) in config.services.iter().enumerate() {
        if let Some(repository) = &service.repository
            && !config.repositories.iter().any(|r| &r.name == repository)
        {
            bail!(
                "`services[{idx}]` (`{}`): `repository` = `{repository}` is not a configured `[[repositories]]` name",
                service.name
            );
        }
        services.push(server::ServiceOwnership {
            service: service.name.clone(),
            repository: service.repository.clone(),
            path_prefix: service.path_prefix.clone(),
            team: service.team.clone(),
        });
    }
    let fetch_interval_nanos =
        parse_duration_nanos(&config.mirrors.fetch_interval).with_context(|| {
            format!("`mirrors.fetch_interval` = `{}`", config.mirrors.fetch_interval)
        })?;
    let mirrors = server::MirrorSettings {
        dir: config.storage.data_dir.join("mirrors"),
        fetch_interval: std::time::Duration::from_nanos(fetch_interval_nanos),
        show_progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    Ok(server::ChangeSettings { integrations, repositories, services, mirrors })
}

/// `https://host/x` with `user:token` becomes `https://user:token@host/x`.
fn with_credentials(url: &str, credentials: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    matches!(scheme, "http" | "https").then(|| format!("{scheme}://{credentials}@{rest}"))
}

fn resolve_detection(config: &Config) -> anyhow::Result<server::DetectionSettings> {
    let d = &config.detection;
    let duration = |key: &str, value: &str| {
        parse_duration_nanos(value).with_context(|| format!("`{key}` = `{value}`"))
    };
    let fraction = |key: &str, value: f64, max: f64| -> anyhow::Result<f64> {
        if !(value > 0.0 && value < max) {
            bail!("`detection.{key}` = {value} must be above 0 and below {max}");
        }
        Ok(value)
    };
    let interval = duration("detection.interval", &d.interval)?;
    let before_window = duration("detection.before_window", &d.before_window)?;
    const MINUTE: u64 = 60_000_000_000;
    if before_window < MINUTE {
        bail!("`detection.before_window` = `{}` must be at least `1m`", d.before_window);
    }
    let sketches = duration("retention.sketches", &config.retention.sketches)?;
    let sketch_minutes = duration("retention.sketch_minutes", &config.retention.sketch_minutes)?;
    if sketch_minutes > sketches {
        bail!(
            "`retention.sketch_minutes` = `{}` is longer than `retention.sketches` = `{}`; minutes roll up into hours before sketches expire",
            config.retention.sketch_minutes,
            config.retention.sketches
        );
    }
    Ok(server::DetectionSettings {
        enabled: d.enabled,
        interval: std::time::Duration::from_nanos(interval),
        before_window_minutes: u32::try_from(before_window / MINUTE).unwrap_or(u32::MAX),
        thresholds: analysis::Thresholds {
            alpha: fraction("alpha", d.alpha, 0.5)?,
            min_effect_p50: fraction("min_effect_p50", d.min_effect_p50, 10.0)?,
            min_effect_p95: fraction("min_effect_p95", d.min_effect_p95, 10.0)?,
            min_effect_p99: fraction("min_effect_p99", d.min_effect_p99, 10.0)?,
            min_delta_nanos: duration("detection.min_delta", &d.min_delta)? as f64,
            min_samples_p50: d.min_samples_p50,
            min_samples_p95: d.min_samples_p95,
            min_samples_p99: d.min_samples_p99,
            min_errors: d.min_errors,
            min_error_requests: d.min_error_requests,
            min_error_rate_delta: fraction("min_error_rate_delta", d.min_error_rate_delta, 1.0)?,
            min_error_rate_effect: fraction(
                "min_error_rate_effect",
                d.min_error_rate_effect,
                100.0,
            )?,
            min_new_error_count: d.min_new_error_count.max(1),
        },
        sketch_minutes_max_age_nanos: sketch_minutes,
        sketches_max_age_nanos: sketches,
    })
}

/// `500ms`, `90s`, `30m`, `12h`, `7d`, `2w`.
pub(crate) fn parse_duration_nanos(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    match server::parse_duration_nanos(text) {
        Ok(0) | Err(server::DurationError::NotANumber) => bail!(
            "`{text}` is not a duration; write a positive whole number and a unit, like `7d` or `12h`"
        ),
        Ok(nanos) => Ok(nanos),
        Err(server::DurationError::UnknownUnit(unit)) => {
            bail!("unknown duration unit `{unit}` in `{text}`; use ms, s, m, h, d or w")
        }
        Err(server::DurationError::TooLong) => bail!("`{text}` is too long"),
    }
}

/// `500MB`, `16MiB`, `50GiB`, `1TB`, or a plain number of bytes.
pub(crate) fn parse_bytes(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok().filter(|n| *n > 0).with_context(|| {
        format!("`{text}` is not a size; write a positive whole number and a unit, like `16MiB` or `50GiB`")
    })?;
    let unit_bytes: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "MB" => 1000u64.pow(2),
        "GB" => 1000u64.pow(3),
        "TB" => 1000u64.pow(4),
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => bail!(
            "unknown size unit `{other}` in `{text}`; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"
        ),
    };
    number.checked_mul(unit_bytes).with_context(|| format!("`{text}` is too large"))
}

/// Alert receivers, what each forge integration posts, and the delivery schedule.
fn resolve_notifications(
    config: &Config,
    env: &BTreeMap<String, String>,
    changes: &server::ChangeSettings,
) -> anyhow::Result<server::NotifySettings> {
    let duration = |key: &str, value: &str| {
        parse_duration_nanos(value)
            .map(std::time::Duration::from_nanos)
            .with_context(|| format!("`notifications.{key}` = `{value}`"))
    };
    let n = &config.notifications;
    if n.max_attempts == 0 {
        bail!("`notifications.max_attempts` must be at least 1");
    }
    let retry = server::RetrySettings {
        max_attempts: n.max_attempts,
        initial_backoff: duration("initial_backoff", &n.initial_backoff)?,
        max_backoff: duration("max_backoff", &n.max_backoff)?,
    };
    if retry.max_backoff < retry.initial_backoff {
        bail!(
            "`notifications.max_backoff` = `{}` is shorter than `initial_backoff` = `{}`; make it at least as long",
            n.max_backoff,
            n.initial_backoff
        );
    }
    let sinks = |section: &str, sinks: &[SinkConfig]| -> anyhow::Result<Vec<server::AlertSink>> {
        let mut out: Vec<server::AlertSink> = Vec::new();
        for (idx, sink) in sinks.iter().enumerate() {
            let name = sink.name.clone().unwrap_or_else(|| {
                if idx == 0 { "default".to_owned() } else { (idx + 1).to_string() }
            });
            let key = format!("`alerts.{section}[{idx}]` (`{name}`)");
            if out.iter().any(|s| s.name == name) {
                bail!("{key}: another `[[alerts.{section}]]` has the same `name`");
            }
            let url = match (&sink.url, &sink.url_env, &sink.url_file) {
                (Some(url), None, None) => url.trim().to_owned(),
                (None, Some(_), None) | (None, None, Some(_)) => {
                    read_secret(&key, sink.url_env.as_deref(), sink.url_file.as_deref(), env)?
                        .trim()
                        .to_owned()
                }
                _ => bail!("{key}: set exactly one of `url`, `url_env` or `url_file`"),
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("{key}: the URL must start with `https://` (or `http://`)");
            }
            out.push(server::AlertSink { name, url });
        }
        Ok(out)
    };
    let mut forges = Vec::new();
    for integration in &config.integrations {
        if !(integration.comment_on_findings || integration.status_on_findings) {
            continue;
        }
        let has_api = changes
            .integrations
            .iter()
            .any(|i| i.name == integration.name && i.api_url.is_some() && i.api_token.is_some());
        if !has_api {
            bail!(
                "`integrations` (`{}`): `comment_on_findings` and `status_on_findings` need `api_url` and `api_token_env` (a token that may comment on reviews and set commit statuses)",
                integration.name
            );
        }
        forges.push(server::ForgeNotify {
            integration: integration.name.clone(),
            comments: integration.comment_on_findings,
            statuses: integration.status_on_findings,
        });
    }
    let mut repositories = Vec::new();
    for (idx, repository) in config.repositories.iter().enumerate() {
        let Some(name) = &repository.integration else { continue };
        let key = format!("`repositories[{idx}]` (`{}`)", repository.name);
        let Some(integration) = changes.integrations.iter().find(|i| &i.name == name) else {
            bail!("{key}: `integration` = `{name}` is not a configured `[[integrations]]` name");
        };
        let path = match (&repository.forge_path, integration.kind) {
            (Some(path), _) => Some(path.trim().trim_matches('/').to_owned()),
            (None, model::ForgeKind::Phabricator) => repository.monogram.clone(),
            (None, _) => derive_forge_path(
                repository.web_url.as_deref().or(repository.url.as_deref()),
                integration.api_url.as_deref(),
            ),
        };
        let posts = forges.iter().any(|f: &server::ForgeNotify| &f.integration == name);
        let path = match path.filter(|p| !p.is_empty()) {
            Some(path) => path,
            None if posts => bail!(
                "{key}: cannot tell its path on `{name}` from `url`; set `forge_path` (`owner/name`{})",
                if integration.kind == model::ForgeKind::Phabricator {
                    ", or `monogram` for Phabricator"
                } else {
                    ""
                }
            ),
            None => continue,
        };
        repositories.push(server::RepositoryForge {
            repository: repository.name.clone(),
            integration: name.clone(),
            path,
        });
    }
    let services = config
        .services
        .iter()
        .map(|service| server::ServiceNotify {
            service: service.name.clone(),
            tier: service.tier.unwrap_or(server::DEFAULT_TIER),
            comments: service.comment_on_findings.unwrap_or(true),
            alerts: service.alerts.unwrap_or(true),
        })
        .collect();
    Ok(server::NotifySettings {
        alertmanagers: sinks("alertmanager", &config.alerts.alertmanager)?,
        webhooks: sinks("webhook", &config.alerts.webhook)?,
        forges,
        repositories,
        services,
        retry,
        alert_refresh: duration("alert_refresh", &n.alert_refresh)?,
    })
}

/// A repository's path on its forge from its URL: what follows the forge's address (or, for
/// an API host such as `api.github.com`, what follows the host).
fn derive_forge_path(url: Option<&str>, api_url: Option<&str>) -> Option<String> {
    let url = url?;
    if !url.contains("://") && !url.contains('@') {
        return None; // a local path
    }
    let normalized = model::normalize_repository_url(url);
    if let Some(base) = api_url.map(model::normalize_repository_url)
        && let Some(rest) = normalized.strip_prefix(&format!("{base}/"))
    {
        return Some(rest.to_owned());
    }
    normalized.split_once('/').map(|(_, rest)| rest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn load_str(text: &str, vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanblame.toml");
        std::fs::write(&path, text).unwrap();
        load(Some(&path), &env(vars))
    }

    #[test]
    fn no_file_gives_the_embedded_defaults() {
        let config = load(None, &env(&[])).unwrap();
        let resolved = resolve(&config, &env(&[])).unwrap();
        assert_eq!(resolved.settings.http_addr.to_string(), "127.0.0.1:7420");
        assert_eq!(resolved.data_dir, PathBuf::from("./spanblame-data"));
        assert_eq!(resolved.settings.retention.spans_max_age_nanos, 7 * 86_400 * 1_000_000_000);
    }

    #[test]
    fn head_and_block_sizes_resolve_and_bad_ones_name_the_keys() {
        let overrides =
            [("SPANBLAME_STORAGE_HEAD_SPANS", "500"), ("SPANBLAME_STORAGE_BLOCK_SPANS", "4000")];
        let config = load(None, &env(&overrides)).unwrap();
        match resolve(&config, &env(&overrides)).unwrap().store {
            store::SpanBackend::Embedded(options) => {
                assert_eq!((options.max_head_spans, options.compacted_block_spans), (500, 4000));
            }
            other => panic!("{other:?}"),
        }
        let config = load_str("[storage]\nhead_spans = 1000\nblock_spans = 10\n", &[]).unwrap();
        let error = resolve(&config, &env(&[])).unwrap_err().to_string();
        assert!(
            error.contains("`storage.head_spans`") && error.contains("`storage.block_spans`"),
            "{error}"
        );
    }

    #[test]
    fn environment_overrides_keys_and_keeps_types() {
        let config = load_str(
            "[server]\nhttp_addr = \"127.0.0.1:1\"\n",
            &[
                ("SPANBLAME_SERVER_HTTP_ADDR", "0.0.0.0:8080"),
                ("SPANBLAME_INGEST_MAX_EXPORTS_IN_FLIGHT", "7"),
                ("SPANBLAME_RETENTION_DISK_BUDGET", "50GiB"),
                ("SPANBLAME_GOGS_SECRET", "not an override"),
            ],
        )
        .unwrap();
        assert_eq!(config.server.http_addr, "0.0.0.0:8080");
        assert_eq!(config.ingest.max_exports_in_flight, 7);
        let resolved = resolve(&config, &env(&[])).unwrap();
        assert_eq!(resolved.settings.retention.disk_budget_bytes, Some(50 << 30));
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let err = |text: &str, vars: &[(&str, &str)]| -> String {
            match load_str(text, vars).and_then(|c| resolve(&c, &env(vars))) {
                Ok(_) => panic!("expected an error for {text:?}"),
                Err(e) => format!("{e:#}"),
            }
        };
        assert!(err("[server]\nhttp_adr = \"x\"\n", &[]).contains("unknown field `http_adr`"));
        assert!(
            err("[server]\nhttp_addr = \"localhost\"\n", &[])
                .contains("`server.http_addr` = `localhost` is not a socket address")
        );
        assert!(
            err("[retention]\nspans = \"7 days\"\n", &[]).contains("unknown duration unit `days`")
        );
        assert!(
            err("[storage]\nkind = \"cluster\"\n", &[])
                .contains("`storage.kind` = `cluster` needs `storage.clickhouse_url`")
        );
        let missing = err(
            "[ingest]\nrequire_auth = true\n[[ingest.tokens]]\nname = \"c\"\nsecret_env = \"NOPE_TOKEN\"\n",
            &[],
        );
        assert!(missing.contains("`NOPE_TOKEN` named by `secret_env` is not set"), "{missing}");
        assert!(err("[ingest]\nmax_body = \"lots\"\n", &[]).contains("`ingest.max_body` = `lots`"));
    }

    #[test]
    fn postgresql_keys_are_checked_and_name_the_fix() {
        let cluster = "[storage]\nkind = \"cluster\"\nclickhouse_url = \"http://ch:8123\"\n";
        let resolved = |text: &str, vars: &[(&str, &str)]| {
            load_str(text, vars).and_then(|c| resolve(&c, &env(vars)))
        };
        let err = |text: &str, vars: &[(&str, &str)]| match resolved(text, vars) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(e) => format!("{e:#}"),
        };
        let pg = [("PG", "postgres://spanblame:secret@db:5432/meta")];
        let ok = resolved(
            &format!("{cluster}postgres_url_env = \"PG\"\nbackground_lease = \"30s\"\n"),
            &pg,
        )
        .unwrap();
        match &ok.metadata {
            store::MetadataBackend::Postgres(options) => {
                assert_eq!(options.display_url(), "postgres://spanblame:***@db:5432/meta");
            }
            other => panic!("expected PostgreSQL, got {other:?}"),
        }
        assert_eq!(ok.settings.background_lease, std::time::Duration::from_secs(30));
        assert!(matches!(resolved(cluster, &[]).unwrap().metadata, store::MetadataBackend::Sqlite));
        let unset = err(&format!("{cluster}postgres_url_env = \"NOPE\"\n"), &[]);
        assert!(
            unset.contains("`storage.postgres_url_env`: environment variable `NOPE`"),
            "{unset}"
        );
        let embedded = err("[storage]\npostgres_url_env = \"PG\"\n", &pg);
        assert!(embedded.contains("need `storage.kind = \"cluster\"`"), "{embedded}");
        let short = err(&format!("{cluster}background_lease = \"1s\"\n"), &[]);
        assert!(short.contains("`storage.background_lease` must be at least 3s"), "{short}");
        let bad = err(
            &format!("{cluster}postgres_url_env = \"PG\"\n"),
            &[("PG", "postgres://db:notaport/x")],
        );
        assert!(bad.contains("is not valid") && bad.contains("postgres://"), "{bad}");
    }

    #[test]
    fn notifications_resolve_sinks_forge_paths_and_tiers() {
        let vars = [
            ("HOOK", "0123456789abcdef"),
            ("GITEA_TOKEN", "0123456789abcdef0123"),
            ("SLACK", "https://hooks.slack.example/T1/B2/secret"),
        ];
        let resolve_str = |text: &str| load_str(text, &vars).and_then(|c| resolve(&c, &env(&vars)));
        let base = "[[integrations]]\nname = \"gitea-main\"\nkind = \"gitea\"\nsecret_env = \"HOOK\"\n\
            api_url = \"https://git.example.com\"\napi_token_env = \"GITEA_TOKEN\"\n\
            comment_on_findings = true\n\
            [[repositories]]\nname = \"shop\"\nurl = \"https://git.example.com/Acme/shop.git\"\nmirror = false\nintegration = \"gitea-main\"\n\
            [[services]]\nname = \"checkout\"\nrepository = \"shop\"\ntier = 1\nalerts = false\n\
            [[alerts.alertmanager]]\nurl = \"http://alertmanager:9093\"\n\
            [[alerts.webhook]]\nname = \"slack\"\nurl_env = \"SLACK\"\n\
            [notifications]\nmax_attempts = 5\ninitial_backoff = \"2s\"\n";
        let n = resolve_str(base).unwrap().settings.notifications;
        assert_eq!(n.alertmanagers[0].name, "default");
        assert_eq!(n.webhooks[0].url, "https://hooks.slack.example/T1/B2/secret");
        assert!(!format!("{:?}", n.webhooks).contains("secret"), "webhook URLs are redacted");
        assert_eq!(n.repositories[0].path, "acme/shop", "derived from the URL under api_url");
        assert_eq!((n.forges[0].comments, n.forges[0].statuses), (true, false));
        assert_eq!(
            (n.services[0].tier, n.services[0].alerts, n.services[0].comments),
            (1, false, true)
        );
        assert_eq!((n.retry.max_attempts, n.retry.initial_backoff.as_secs()), (5, 2));

        let local = base.replace("https://git.example.com/Acme/shop.git", "/srv/git/shop");
        let err = format!("{:#}", resolve_str(&local).unwrap_err());
        assert!(
            err.contains("`repositories[0]` (`shop`)") && err.contains("set `forge_path`"),
            "{err}"
        );
        let explicit = local.replace(
            "integration = \"gitea-main\"",
            "integration = \"gitea-main\"\nforge_path = \"acme/shop\"",
        );
        assert_eq!(
            resolve_str(&explicit).unwrap().settings.notifications.repositories[0].path,
            "acme/shop"
        );
        let err = format!(
            "{:#}",
            resolve_str(&base.replace("integration = \"gitea-main\"", "integration = \"gogs\""))
                .unwrap_err()
        );
        assert!(err.contains("`integration` = `gogs` is not a configured"), "{err}");
        let no_api = base.replace(
            "api_url = \"https://git.example.com\"\napi_token_env = \"GITEA_TOKEN\"\n",
            "",
        );
        let err = format!("{:#}", resolve_str(&no_api).unwrap_err());
        assert!(
            err.contains("`comment_on_findings` and `status_on_findings` need `api_url`"),
            "{err}"
        );
        let both = base.replace("url_env = \"SLACK\"", "url_env = \"SLACK\"\nurl = \"https://x\"");
        let err = format!("{:#}", resolve_str(&both).unwrap_err());
        assert!(err.contains("`alerts.webhook[0]` (`slack`): set exactly one of"), "{err}");
        let err = format!(
            "{:#}",
            resolve_str(&base.replace("http://alertmanager:9093", "alertmanager:9093"))
                .unwrap_err()
        );
        assert!(err.contains("must start with `https://`"), "{err}");
        assert!(
            derive_forge_path(Some("git@github.com:acme/api.git"), Some("https://api.github.com"))
                .is_some_and(|p| p == "acme/api")
        );
        assert_eq!(
            derive_forge_path(
                Some("https://gl.example.com/gitlab/grp/sub/api"),
                Some("https://gl.example.com/gitlab")
            )
            .as_deref(),
            Some("grp/sub/api")
        );
    }

    #[test]
    fn a_phabricator_integration_needs_conduit_access_and_monograms_are_checked() {
        let vars = [
            ("PHAB_HMAC", "0123456789abcdef0123456789abcdef"),
            ("PHAB_TOKEN", "api-abcdefghijklmnopqrstuvwxyzab"),
        ];
        let resolve_str = |text: &str| load_str(text, &vars).and_then(|c| resolve(&c, &env(&vars)));
        let hook = "[[integrations]]\nname = \"phab\"\nkind = \"phabricator\"\nsecret_env = \"PHAB_HMAC\"\n";
        let err = format!("{:#}", resolve_str(hook).unwrap_err());
        assert!(err.contains("needs `api_url`") && err.contains("Conduit API token"), "{err}");
        let full = format!(
            "{hook}api_url = \"https://phab.example.com/\"\napi_token_env = \"PHAB_TOKEN\"\n\
             [[repositories]]\nname = \"web\"\nforge = \"phabricator\"\nmonogram = \"rWEB\"\n"
        );
        let resolved = resolve_str(&full).unwrap();
        let integration = &resolved.settings.changes.integrations[0];
        assert_eq!(integration.api_url.as_deref(), Some("https://phab.example.com"));
        assert_eq!(integration.api_token.as_deref(), Some("api-abcdefghijklmnopqrstuvwxyzab"));
        assert!(!format!("{integration:?}").contains("api-abc"), "the token is redacted");
        let err = format!("{:#}", resolve_str(&full.replace("rWEB", "web")).unwrap_err());
        assert!(err.contains("`monogram` = `web`") && err.contains("`R12`"), "{err}");
        let err = format!("{:#}", resolve_str(&full.replace("https://phab", "phab")).unwrap_err());
        assert!(err.contains("must start with `https://`"), "{err}");
        let gitlab =
            "[[integrations]]\nname = \"gl\"\nkind = \"gitlab\"\nsecret_env = \"GL_SIGNING\"\n";
        let bad = [("GL_SIGNING", "whsec_not*base64*at*all")];
        let err = load_str(gitlab, &bad).and_then(|c| resolve(&c, &env(&bad))).unwrap_err();
        assert!(format!("{err:#}").contains("not base64"), "{err:#}");
        let good = [("GL_SIGNING", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")];
        load_str(gitlab, &good).and_then(|c| resolve(&c, &env(&good))).unwrap();
    }

    #[test]
    fn auth_resolves_from_file_and_environment_and_errors_name_the_key() {
        let text = "[auth]\nmode = \"proxy\"\n[[teams]]\nname = \"payments\"\noidc_groups = [\"payments-eng\"]\n";
        let vars = [
            ("SPANBLAME_AUTH_PROXY_ASSERTION_HEADER", "X-Pomerium-Jwt-Assertion"),
            ("SPANBLAME_AUTH_PROXY_JWKS_URL", "https://proxy.example.com/jwks.json"),
            ("SPANBLAME_AUTH_PROXY_ISSUER", "proxy.example.com"),
            ("SPANBLAME_AUTH_PROXY_AUDIENCE", "spanblame.example.com"),
        ];
        let config = load_str(text, &vars).unwrap();
        let access = resolve(&config, &env(&vars)).unwrap().settings.access;
        match &access.mode {
            server::AuthMode::Proxy(proxy) => {
                assert_eq!(proxy.assertion_header, "x-pomerium-jwt-assertion")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            access.identity.teams,
            [("payments".to_owned(), vec!["payments-eng".to_owned()])]
        );
        // With sign-in, deploy reports need a token unless opened explicitly (issue 20, item
        // 2); open ingest is named as a warning.
        assert!(!access.deploys_open);
        assert_eq!(open_doors(&access).len(), 1, "{:?}", open_doors(&access));
        let opened = format!("{text}[deploys]\nrequire_auth = false\n");
        let access = resolve(&load_str(&opened, &vars).unwrap(), &env(&vars)).unwrap();
        assert!(access.settings.access.deploys_open);
        assert_eq!(open_doors(&access.settings.access).len(), 2);
        let open = resolve(&load_str("", &[]).unwrap(), &env(&[])).unwrap().settings.access;
        assert!(open.deploys_open && open_doors(&open).is_empty());
        let err = |text: &str| {
            format!("{:#}", load_str(text, &[]).and_then(|c| resolve(&c, &env(&[]))).unwrap_err())
        };
        assert!(err("[auth]\nmode = \"sso\"\n").contains("`auth.mode` = `sso` is not valid"));
        assert!(err("[auth]\nmode = \"oidc\"\n").contains("needs an `[auth.oidc]` table"));
        assert!(err("[auth]\nmode = \"oidc\"\n[auth.oidc]\nissuer = \"https://idp\"\nclient_id = \"x\"\nclient_secret_env = \"NOPE\"\n").contains("`NOPE`"));
        assert!(
            err("[auth.oidc]\nissuer = \"https://idp\"\nclient_id = \"x\"\nadmin_group = []\n")
                .contains("unknown field `admin_group`")
        );
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_bytes("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_bytes("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_duration_nanos("90s").unwrap(), 90_000_000_000);
        assert!(parse_duration_nanos("0d").is_err());
    }
}
