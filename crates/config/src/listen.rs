//! `[server]` and `[ingest]`: listeners, connection limits and timeouts, and what one export may
//! cost.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::values::parse_duration_nanos;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub http_addr: String,
    pub otlp_grpc_addr: String,
    pub otlp_http_addr: String,
    pub zipkin_addr: String,
    pub public_url: Option<String>,
    pub max_connections: usize,
    pub header_read_timeout: String,
    pub body_read_timeout: String,
    pub idle_timeout: String,
    pub shutdown_grace: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let limits = server::ConnectionLimits::default();
        let secs = |d: std::time::Duration| format!("{}s", d.as_secs());
        ServerConfig {
            http_addr: "127.0.0.1:7420".into(),
            otlp_grpc_addr: "127.0.0.1:4317".into(),
            otlp_http_addr: "127.0.0.1:4318".into(),
            zipkin_addr: "127.0.0.1:9411".into(),
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
pub struct IngestConfig {
    pub require_auth: bool,
    pub tokens: Vec<TokenConfig>,
    pub max_body: String,
    pub max_attributes_per_span: usize,
    pub max_attribute_value_bytes: usize,
    pub max_exports_in_flight: usize,
    pub max_memory: String,
    pub max_future: String,
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

/// `[server]`'s connection caps and timeouts.
pub(super) fn resolve_connections(
    server: &ServerConfig,
) -> anyhow::Result<server::ConnectionLimits> {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
}
