//! `spanblame mcp`: the Model Context Protocol over stdio, for assistants that start their
//! tools as processes. It relays every request to a running server's `/mcp` endpoint with the
//! person's or token's credentials, so the tools, their authorization, redaction and audit are
//! the server's own; nothing is answered here.

use anyhow::{Context, bail};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ClientConfig, InitializeResult, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities,
};
use rmcp::service::{Peer, RequestContext, RoleClient, RoleServer};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ErrorData, ServerHandler, ServiceExt};

#[derive(Debug, clap::Args)]
pub(crate) struct McpArgs {
    /// The spanblame server (`http://host:port`, or `https://` behind a TLS proxy).
    #[arg(long, env = "SPANBLAME_SERVER", default_value = "http://127.0.0.1:7420")]
    server: String,
    /// A token with the `read` scope, sent as `Authorization: Bearer`; the assistant sees what
    /// it may see. Without one, only a server with `auth.mode = "none"` answers.
    #[arg(long, env = "SPANBLAME_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Relays stdio to the server until the assistant closes stdin.
pub(crate) fn run(args: &McpArgs) -> anyhow::Result<()> {
    let server = args.server.trim_end_matches('/');
    if !(server.starts_with("http://") || server.starts_with("https://")) {
        bail!("`--server` = `{server}` must start with `http://` or `https://`");
    }
    let url = format!("{server}/mcp");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
        if let Some(token) = &args.token {
            config = config.auth_header(token.clone());
        }
        let upstream = ClientConfig::default()
            .serve(StreamableHttpClientTransport::from_config(config))
            .await
            .with_context(|| {
                format!("connecting to {url}: is the server running, and is the token (SPANBLAME_TOKEN) valid with the `read` scope?")
            })?;
        // Describe ourselves as the server does: its name, version, tools and instructions.
        let info = upstream.peer().peer_info().map(|peer| {
            let mut info = InitializeResult::new(peer.capabilities.clone());
            if let Some(server) = &peer.server_info {
                info = info.with_server_info(server.clone());
            }
            if let Some(instructions) = &peer.instructions {
                info = info.with_instructions(instructions.clone());
            }
            info
        });
        let relay = Relay { upstream: upstream.peer().clone(), info };
        let (stdin, stdout) = (tokio::io::stdin(), tokio::io::stdout());
        let running = relay.serve((stdin, stdout)).await.context("serving MCP on stdio")?;
        running.waiting().await.context("serving MCP on stdio")?;
        upstream.cancel().await.ok();
        Ok(())
    })
}

/// The stdio side: lists and calls tools on the server.
#[derive(Clone)]
struct Relay {
    upstream: Peer<RoleClient>,
    /// What the server said of itself when we connected.
    info: Option<InitializeResult>,
}

fn upstream_error(error: rmcp::ServiceError) -> ErrorData {
    ErrorData::internal_error(format!("the spanblame server: {error}"), None)
}

impl ServerHandler for Relay {
    fn get_info(&self) -> InitializeResult {
        self.info.clone().unwrap_or_else(|| {
            InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
        })
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.upstream.list_tools(request).await.map_err(upstream_error)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.upstream.call_tool(request).await.map(Into::into).map_err(upstream_error)
    }
}
