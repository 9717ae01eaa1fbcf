//! `[server]` and `[ingest]`: listeners, connection limits and timeouts, and what one export may
//! cost.

use std::path::PathBuf;

use anyhow::{Context, bail};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::values::parse_duration_nanos;

/// The listeners, and what one connection may cost. Every listener is on loopback by default:
/// exposing spanblame is a deliberate choice.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The web UI, the JSON API, the Tempo and Jaeger query APIs, webhooks, MCP, `/metrics`,
    /// and OTLP/HTTP too.
    pub http_addr: String,
    /// OTLP over gRPC.
    pub otlp_grpc_addr: String,
    /// OTLP over HTTP (protobuf or JSON, at `/v1/traces`).
    pub otlp_http_addr: String,
    /// Zipkin v2 JSON (`POST /api/v2/spans`).
    pub zipkin_addr: String,
    /// The address people and forges reach the server at: links in comments and alerts, and
    /// the OIDC callback (`{public_url}/auth/callback`).
    #[schemars(example = &"https://spanblame.example.com")]
    pub public_url: Option<String>,
    /// Connections per listener; beyond it new connections wait in the kernel's queue.
    pub max_connections: usize,
    /// A connection's first bytes and each HTTP/1 request's headers must arrive within this;
    /// HTTP/2 pings too.
    pub header_read_timeout: String,
    /// A request body must arrive in full within this (else 400).
    pub body_read_timeout: String,
    /// A connection without a byte either way this long is closed (idle keep-alive too).
    pub idle_timeout: String,
    /// On SIGTERM or Ctrl-C, requests in flight get this long, then their connections close.
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

/// Who may send spans, and what one export may cost.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Whether sending spans needs a token with the `ingest` scope (false: anyone who reaches
    /// the OTLP and Zipkin ports may; a token sent anyway keeps its service restriction).
    pub require_auth: bool,
    /// Tokens for collectors, beside API tokens with the `ingest` scope.
    pub tokens: Vec<TokenConfig>,
    /// The largest export, after decompression.
    pub max_body: String,
    /// Attributes kept per span; the rest are dropped and counted.
    pub max_attributes_per_span: usize,
    /// Longer attribute values are truncated to this many bytes.
    pub max_attribute_value_bytes: usize,
    /// Exports read, decoded or written at once; beyond this, 429 (gRPC: `RESOURCE_EXHAUSTED`).
    pub max_exports_in_flight: usize,
    /// Memory all exports in flight may hold (at least twice `max_body`); beyond it, 429.
    pub max_memory: String,
    /// Spans ending later than this after the server's clock are rejected (a partial success).
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

/// A token written in the configuration (for a collector or CI), beside API tokens.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Names it in the audit log.
    #[schemars(example = &"collector")]
    pub name: String,
    /// The environment variable holding the secret (at least 16 characters).
    #[schemars(example = &"SPANBLAME_COLLECTOR_TOKEN")]
    pub secret_env: Option<String>,
    /// Or a file holding it.
    #[schemars(example = &"/run/secrets/collector-token")]
    pub secret_file: Option<PathBuf>,
}
