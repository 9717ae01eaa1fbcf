//! The `spanblame` command: starts the server (`serve`), reports deploys from CI (`deploy`),
//! manages tokens (`token`), checks the audit log (`audit`), backs up and restores a data
//! directory (`backup`, `restore`), and checks configuration (`check-config`). Configuration
//! loading is the `config` crate's, the deploy client is in `deploy.rs`; everything else is in
//! the library crates. Errors here carry context naming the file, address or key involved.

mod admin;
mod backup;
mod check;
mod client;
mod demo;
mod deploy;
mod gate;
mod mcp;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// git blame for latency: an OpenTelemetry-native trace store that knows which code is running.
#[derive(Debug, Parser)]
#[command(name = "spanblame", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How logs are written to stderr: `text` (a line per event, coloured on a terminal) or
    /// `json` (one JSON object per line, for a log collector). What is logged is set by
    /// `SPANBLAME_LOG` (`info` by default; e.g. `info,jobs=debug`).
    #[arg(long, global = true, value_enum, env = "SPANBLAME_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: OTLP ingest (gRPC and HTTP), the web UI, the JSON API, health and metrics.
    ///
    /// With no configuration file, spans are stored in `./spanblame-data` and every listener is
    /// on loopback: exposing the server is a deliberate choice (`--http-addr 0.0.0.0:7420`).
    Serve {
        #[command(flatten)]
        common: Common,
        /// Where spans and metadata are stored (overrides `storage.data_dir`).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Address for the web UI, JSON API, health, metrics and OTLP/HTTP (overrides
        /// `server.http_addr`).
        #[arg(long, value_name = "ADDR")]
        http_addr: Option<String>,
        /// Address for OTLP/gRPC (overrides `server.otlp_grpc_addr`; default `127.0.0.1:4317`).
        #[arg(long, value_name = "ADDR")]
        otlp_grpc_addr: Option<String>,
        /// Address for OTLP/HTTP (overrides `server.otlp_http_addr`; default `127.0.0.1:4318`).
        #[arg(long, value_name = "ADDR")]
        otlp_http_addr: Option<String>,
        /// Address for Zipkin v2 JSON (`POST /api/v2/spans`; overrides `server.zipkin_addr`;
        /// default `127.0.0.1:9411`). The main address takes it too.
        #[arg(long, value_name = "ADDR")]
        zipkin_addr: Option<String>,
        /// Build a demo world and feed it to this server: four services, a git repository with
        /// reviewed changes, three hours of traffic and five deploys, one of which makes a code
        /// path slower. Within a minute the web UI shows the regression and its suspect commit.
        /// Uses `--data-dir` (which must be empty or new) or a new temporary directory, and
        /// writes the configuration it runs with there; not for use with `--config`.
        #[arg(long, conflicts_with = "config")]
        demo: bool,
    },
    /// Report a deploy to a running server (for CI): `POST /api/v1/deploys`.
    ///
    /// Prints the recorded deploy, its predecessor and whether spans had already announced the
    /// version (an inferred deploy, which this report merges with).
    #[command(disable_version_flag = true)]
    Deploy(deploy::DeployArgs),
    /// Ask whether a change will be attributable once deployed (for CI): `POST /api/v1/gate`.
    ///
    /// Checks that the commit links to a review, that the service's code is mapped
    /// (`[[services]]`: repository, path, owner), and that spans from staging or CI carry
    /// `service.version` and a commit attribute. Prints each check with what was found and the
    /// fix. Exits 0 when it passes, 1 when it fails, 2 when it cannot tell yet (no spans of the
    /// commit so far, a commit not fetched yet) or the server did not answer.
    #[command(disable_version_flag = true)]
    Gate(gate::GateArgs),
    /// Manage API tokens: create, list (`--stale`), rotate, revoke.
    #[command(subcommand)]
    Token(admin::TokenCommand),
    /// Check (`verify`) or export (`export --since`) the tamper-evident audit log.
    #[command(subcommand)]
    Audit(admin::AuditCommand),
    /// Back up a data directory while its server runs (`--data-dir DIR --to DEST`), or check
    /// a backup (`verify DEST`).
    ///
    /// A consistent snapshot: the audit key, the WAL, the metadata through SQLite's online
    /// backup API, and the blocks that snapshot covers (hard links when on the same file
    /// system), with `SHA256SUMS`. Every span acknowledged before it began is in it. Mirrors
    /// are left out (the server clones them again). A fleet's PostgreSQL and ClickHouse are
    /// backed up with their own tools.
    #[command(disable_version_flag = true)]
    Backup(backup::BackupArgs),
    /// Restore a backup into a new or empty data directory (`--from DEST --data-dir NEW`),
    /// after verifying it; the server started on it replays the WAL as after a crash.
    #[command(disable_version_flag = true)]
    Restore(backup::RestoreArgs),
    /// Serve the Model Context Protocol on stdio for an AI assistant, relayed to a running
    /// server's `/mcp` endpoint (which MCP clients can also use directly over streamable HTTP).
    ///
    /// Tools: list_incidents, get_incident, list_findings, get_finding, draft_rollback,
    /// get_trace, search_traces, commit_impact, list_deploys, dora_metrics. They run as the token given: the assistant
    /// sees what that token may see, and each call is in the audit log as `mcp.<tool>`.
    #[command(disable_version_flag = true)]
    Mcp(mcp::McpArgs),
    /// Validate the configuration (file and SPANBLAME_* variables) and print what would run.
    ///
    /// The report goes to stdout (`--json`: one JSON object); warnings (open doors) and
    /// problems go to stderr. With `storage.kind = "cluster"` it also connects to every
    /// ClickHouse node and reports its server version and spanblame schema version, changing
    /// nothing. Exits non-zero and names every key (or URL) with its problem and fix when
    /// something is wrong.
    CheckConfig {
        #[command(flatten)]
        common: Common,
        /// Print the report as one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Apply schema changes: the metadata database in `storage.data_dir` and, with
    /// `storage.kind = "cluster"`, ClickHouse's tables on every node. Idempotent; `serve`
    /// applies missing migrations too, so this is for doing it ahead of a rollout.
    Migrate {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, clap::Args)]
struct Common {
    /// A TOML configuration file; none is needed for the embedded default. Every key can be
    /// overridden by an environment variable `SPANBLAME_<SECTION>_<KEY>`, e.g.
    /// `SPANBLAME_STORAGE_DATA_DIR=/var/lib/spanblame`. Every key, its default and its variable:
    /// docs/configuration.md (/usr/share/doc/spanblame/configuration.md when installed).
    #[arg(long, short, value_name = "FILE", env = "SPANBLAME_CONFIG")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Colour only for a person at a terminal, and never when `NO_COLOR` is set.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SPANBLAME_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(colour).init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
    // The gate's exit code is its answer, not only success or failure.
    if let Command::Gate(args) = &cli.command {
        return gate::main(args);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// How people sign in, in words: `none`, `oidc (issuer …)`, `proxy (header …)`.
fn describe_auth(mode: &server::AuthMode) -> String {
    match mode {
        server::AuthMode::None => "none (whoever reaches the server is its operator)".to_owned(),
        server::AuthMode::Oidc(oidc) => {
            format!("oidc (issuer {}, client {})", oidc.issuer, oidc.client_id)
        }
        server::AuthMode::Proxy(proxy) => {
            format!("proxy (assertion header {}, issuer {})", proxy.assertion_header, proxy.issuer)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    match cli.command {
        Command::Deploy(args) => deploy::run(&args),
        // Answered by `main`, which exits with the gate's outcome.
        Command::Gate(_) => Ok(()),
        Command::Token(command) => admin::run_token(command),
        Command::Audit(command) => admin::run_audit(command),
        Command::Backup(args) => backup::run_backup(args),
        Command::Restore(args) => backup::run_restore(&args),
        Command::Mcp(args) => mcp::run(&args),
        Command::CheckConfig { common, json } => check::run(common.config.as_deref(), &env, json),
        Command::Migrate { common } => {
            let config = config::load(common.config.as_deref(), &env)?;
            let resolved = config::resolve(&config, &env)?;
            let metadata = store::migrate_metadata(&resolved.data_dir, &resolved.metadata)?;
            tracing::info!(
                metadata = %describe_metadata(&resolved),
                from = metadata.0,
                to = metadata.1,
                "metadata schema is current"
            );
            if let store::SpanBackend::ClickHouse(options) = &resolved.store {
                for node in store::clickhouse::migrate(options)? {
                    tracing::info!(
                        url = %node.url,
                        server_version = %node.server_version,
                        from = node.schema_version,
                        to = store::clickhouse::SCHEMA_VERSION,
                        "ClickHouse schema is current"
                    );
                }
            }
            Ok(())
        }
        Command::Serve {
            common,
            data_dir,
            http_addr,
            otlp_grpc_addr,
            otlp_http_addr,
            zipkin_addr,
            demo,
        } => {
            let world = if demo {
                let dir = data_dir.clone().unwrap_or_else(|| {
                    std::env::temp_dir().join(format!(
                        "spanblame-demo-{}-{}",
                        std::process::id(),
                        jiff::Timestamp::now().as_second()
                    ))
                });
                tracing::info!(dir = %dir.display(), "demo: building the world (a git repository, the configuration)");
                Some(demo::prepare(&dir)?)
            } else {
                None
            };
            let config_path = world.as_ref().map(|w| w.config_path.clone()).or(common.config);
            let mut config = config::load(config_path.as_deref(), &env)?;
            if let Some(world) = &world {
                config.storage.data_dir = world.data_dir.clone();
            } else if let Some(dir) = data_dir {
                config.storage.data_dir = dir;
            }
            for (flag, target) in [
                (http_addr, &mut config.server.http_addr),
                (otlp_grpc_addr, &mut config.server.otlp_grpc_addr),
                (otlp_http_addr, &mut config.server.otlp_http_addr),
                (zipkin_addr, &mut config.server.zipkin_addr),
            ] {
                if let Some(value) = flag {
                    *target = value;
                }
            }
            let resolved = config::resolve(&config, &env)?;
            serve(resolved, world)
        }
    }
}

fn describe_metadata(resolved: &config::Resolved) -> String {
    resolved.metadata.describe(&resolved.data_dir)
}

fn serve(resolved: config::Resolved, demo: Option<demo::World>) -> anyhow::Result<()> {
    if matches!(resolved.settings.access.mode, server::AuthMode::None)
        && !resolved.settings.http_addr.ip().is_loopback()
    {
        tracing::warn!(
            http = %resolved.settings.http_addr,
            "`auth.mode` is `none` but the server listens beyond loopback: anyone who reaches it can read every trace and manage tokens; set `auth.mode = \"oidc\"` or `\"proxy\"`"
        );
    }
    for door in config::open_doors(&resolved.settings.access) {
        tracing::warn!("{door}");
    }
    let data_dir = resolved.data_dir;
    let metadata = resolved.metadata.describe(&data_dir);
    let store = store::SpanStore::open_with(&data_dir, resolved.store, &resolved.metadata)
        .with_context(|| format!("opening the store (metadata in {metadata})"))?;
    let store = Arc::new(store);
    let state = server::AppState::new(resolved.settings, store, Arc::new(server::SystemClock));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("spanblame")
        .build()
        .context("starting the async runtime")?;
    let stop_demo = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let demo_stopper = Arc::clone(&stop_demo);
    runtime.block_on(async move {
        let shutdown = async move {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("INVARIANT: installing a SIGTERM handler works on Unix");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            tracing::info!("shutting down: finishing requests and sealing the head");
            demo_stopper.store(true, std::sync::atomic::Ordering::Relaxed);
        };
        server::serve(state, shutdown, |addrs| {
            tracing::info!(
                http = %addrs.http,
                otlp_grpc = %addrs.otlp_grpc,
                otlp_http = %addrs.otlp_http,
                zipkin = %addrs.zipkin,
                data_dir = %data_dir.display(),
                "spanblame is listening"
            );
            if let Some(world) = demo {
                let url = format!("http://{}", addrs.http);
                tracing::info!(
                    "demo: open {url}/ in a browser; the regression appears within about a minute"
                );
                std::thread::spawn(move || {
                    if let Err(e) = demo::drive(&url, &world, &stop_demo) {
                        tracing::error!("demo: {e:#}");
                    }
                });
            }
        })
        .await
        .context("serving")
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_valid() {
        // Catches clashing flags (e.g. a `--version` argument against clap's own).
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
