//! `spanblame token …` and `spanblame audit …`: token management against a running server's
//! admin API (or, to bootstrap the first admin token, directly in a data directory), and the
//! audit log's verification and export, read straight from the data directory so they work
//! whether or not the server runs.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub(crate) struct Server {
    /// The spanblame server (`http://host:port`).
    #[arg(long, env = "SPANBLAME_SERVER", default_value = "http://127.0.0.1:7420")]
    server: String,
    /// A token with the `admin` scope, or an admin's OIDC token (not needed without sign-in).
    #[arg(long, env = "SPANBLAME_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token; its secret is printed once, on standard output.
    Create {
        #[command(flatten)]
        server: Server,
        /// What the token is for (`otel-collector-eu`, `ci-deploys`).
        #[arg(long)]
        name: String,
        /// Scopes: ingest, deploy, webhook, read, admin, revert (repeat or separate with commas).
        #[arg(long = "scope", required = true, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Only these services (repeat or separate with commas); default: all.
        #[arg(long = "service", value_delimiter = ',')]
        services: Vec<String>,
        /// Only these environments; default: all.
        #[arg(long = "environment", value_delimiter = ',')]
        environments: Vec<String>,
        /// Lifetime, e.g. `90d` (the default), `12h`.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// Write the token straight into this data directory instead of asking a server: the
        /// way to create the first admin token of a server with sign-in. A missing or empty
        /// directory is set up as a new data directory (its metadata is created).
        #[arg(long, value_name = "DIR", conflicts_with = "expires_in")]
        data_dir: Option<PathBuf>,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        server: Server,
        /// Only live tokens unused for 30 days or created more than 90 days ago.
        #[arg(long)]
        stale: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Issue a new secret for a token; the old one stays valid for the grace window.
    Rotate {
        #[command(flatten)]
        server: Server,
        /// The token's prefix (8 hex digits, as `list` shows).
        prefix: String,
        /// How long the old secret stays valid, e.g. `24h` (the default), `0s`.
        #[arg(long, value_name = "DURATION")]
        grace: Option<String>,
    },
    /// Revoke a token at once.
    Revoke {
        #[command(flatten)]
        server: Server,
        prefix: String,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct DataDir {
    /// The server's data directory.
    #[arg(
        long,
        value_name = "DIR",
        env = "SPANBLAME_STORAGE_DATA_DIR",
        default_value = "./spanblame-data"
    )]
    data_dir: PathBuf,
    /// With metadata in PostgreSQL (a fleet): the environment variable holding its URL, as
    /// in the server's `storage.postgres_url_env`. The data directory still holds the audit
    /// key.
    #[arg(long, value_name = "VAR", env = "SPANBLAME_STORAGE_POSTGRES_URL_ENV")]
    postgres_url_env: Option<String>,
}

impl DataDir {
    /// Opens the metadata these options name for reading only: it works beside a running
    /// server, which owns the data directory.
    fn open_accounts_read_only(&self) -> anyhow::Result<store::Accounts> {
        store::Accounts::open_read_only(&self.data_dir, &self.backend()?)
            .with_context(|| format!("opening the metadata of `{}`", self.data_dir.display()))
    }

    /// A data directory no server has started in (missing or empty) gets its metadata
    /// first, so the first admin token can be made before the first start; a directory that
    /// holds something else is still refused (it is likely the wrong path).
    fn create_if_new(&self) -> anyhow::Result<()> {
        let is_new = match std::fs::read_dir(&self.data_dir) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        if is_new {
            store::migrate_metadata(&self.data_dir, &self.backend()?).with_context(|| {
                format!(
                    "creating the metadata of the new data directory `{}`",
                    self.data_dir.display()
                )
            })?;
            tracing::info!(
                data_dir = %self.data_dir.display(),
                "a new data directory: its metadata is created; start the server with this --data-dir"
            );
        }
        Ok(())
    }

    /// Takes the data directory's lock, then opens the metadata for writing.
    fn open_accounts_owned(&self) -> anyhow::Result<(store::DataDirLock, store::Accounts)> {
        let owner = store::DataDirLock::acquire(&self.data_dir).map_err(|e| match e {
            store::StoreError::Locked { .. } => anyhow::anyhow!(
                "{e}; to create a token while the server runs, ask it: `spanblame token create --server URL ...`"
            ),
            other => other.into(),
        })?;
        let accounts = store::Accounts::open(&self.data_dir, &self.backend()?)
            .with_context(|| format!("opening the metadata of `{}`", self.data_dir.display()))?;
        Ok((owner, accounts))
    }

    fn backend(&self) -> anyhow::Result<store::MetadataBackend> {
        Ok(match &self.postgres_url_env {
            None => store::MetadataBackend::Sqlite,
            Some(var) => {
                let url = std::env::var(var).with_context(|| {
                    format!("`--postgres-url-env`: environment variable `{var}` is not set")
                })?;
                store::MetadataBackend::Postgres(store::PostgresOptions::new(&url))
            }
        })
    }
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AuditCommand {
    /// Walk the hash chain; exit non-zero and name the first broken record if it was edited,
    /// or records were inserted or deleted.
    Verify {
        #[command(flatten)]
        data: DataDir,
    },
    /// Write audit records as JSON Lines to standard output.
    Export {
        #[command(flatten)]
        data: DataDir,
        /// Only records at or after this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
    },
}

fn call(server: &Server, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let url = format!("{}{path}", server.server.trim_end_matches('/'));
    let mut request = match method {
        "POST" => client.post(&url),
        _ => client.get(&url),
    };
    if let Some(token) = &server.token {
        request = request.bearer_auth(token.trim());
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response =
        request.send().with_context(|| format!("cannot reach the spanblame server at `{url}`"))?;
    let status = response.status();
    let text = response.text().unwrap_or_default();
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !status.is_success() {
        let message = json["error"]["message"].as_str().unwrap_or(text.as_str());
        bail!("the server refused ({status}): {message}");
    }
    Ok(json)
}

/// Writes a command's result, and a newline, to standard output.
pub(crate) fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.write_all(b"\n"))
        .context("writing to standard output")
}

pub(crate) fn run_token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            server,
            name,
            scopes,
            services,
            environments,
            expires_in,
            data_dir,
        } => {
            let optional = |items: Vec<String>| (!items.is_empty()).then_some(items);
            if let Some(dir) = data_dir {
                return create_local(
                    &dir,
                    &name,
                    &scopes,
                    optional(services),
                    optional(environments),
                );
            }
            let answer = call(
                &server,
                "POST",
                "/api/v1/tokens",
                Some(json!({"name": name, "scopes": scopes, "services": optional(services),
                            "environments": optional(environments), "expires_in": expires_in})),
            )?;
            tracing::info!(prefix = %answer["token"]["prefix"].as_str().unwrap_or(""), expires_at = %answer["token"]["expires_at"].as_str().unwrap_or(""), "token created; its secret is shown only now");
            out(answer["secret"].as_str().unwrap_or_default())
        }
        TokenCommand::List { server, stale, json } => {
            let answer = call(
                &server,
                "GET",
                if stale { "/api/v1/tokens?stale=true" } else { "/api/v1/tokens" },
                None,
            )?;
            if json {
                return out(&serde_json::to_string_pretty(&answer["tokens"]).unwrap_or_default());
            }
            let mut lines = vec![format!(
                "{:<10} {:<20} {:<22} {:<9} {:<20} {:<20}",
                "PREFIX", "NAME", "SCOPES", "STATUS", "EXPIRES", "LAST USED"
            )];
            for token in answer["tokens"].as_array().into_iter().flatten() {
                let scopes: Vec<&str> = token["scopes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let short = |v: &Value| {
                    v.as_str().map_or("never".to_owned(), |t| t.chars().take(19).collect())
                };
                lines.push(format!(
                    "{:<10} {:<20} {:<22} {:<9} {:<20} {:<20}",
                    token["prefix"].as_str().unwrap_or(""),
                    token["name"].as_str().unwrap_or(""),
                    scopes.join(","),
                    token["status"].as_str().unwrap_or(""),
                    short(&token["expires_at"]),
                    short(&token["last_used_at"]),
                ));
            }
            out(&lines.join("\n"))
        }
        TokenCommand::Rotate { server, prefix, grace } => {
            let body = grace.map(|g| json!({"grace": g})).unwrap_or_else(|| json!({}));
            let answer =
                call(&server, "POST", &format!("/api/v1/tokens/{prefix}/rotate"), Some(body))?;
            tracing::info!(
                new_prefix = %answer["token"]["prefix"].as_str().unwrap_or(""),
                old_valid_until = %answer["previous"]["valid_until"].as_str().unwrap_or(""),
                "token rotated; the new secret is shown only now"
            );
            out(answer["secret"].as_str().unwrap_or_default())
        }
        TokenCommand::Revoke { server, prefix } => {
            let answer = call(&server, "POST", &format!("/api/v1/tokens/{prefix}/revoke"), None)?;
            tracing::info!(prefix = %prefix, revoked_at = %answer["token"]["revoked_at"].as_str().unwrap_or(""), "token revoked");
            Ok(())
        }
    }
}

/// Creates a token in a data directory's metadata (servers may be running: metadata writes
/// are serialised).
fn create_local(
    dir: &std::path::Path,
    name: &str,
    scopes: &[String],
    services: Option<Vec<String>>,
    environments: Option<Vec<String>>,
) -> anyhow::Result<()> {
    for scope in scopes {
        if auth::Scope::parse(scope).is_none() {
            bail!("unknown scope `{scope}`; use ingest, deploy, webhook, read, admin or revert");
        }
    }
    // Metadata in PostgreSQL is named the way the server's configuration names it.
    let data = DataDir {
        data_dir: dir.to_owned(),
        postgres_url_env: std::env::var("SPANBLAME_STORAGE_POSTGRES_URL_ENV").ok(),
    };
    data.create_if_new()?;
    let (_owner, accounts) = data.open_accounts_owned()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let secret = auth::token::generate().context("no random source")?;
    let who = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
    accounts.insert_token(&store::StoredToken {
        prefix: secret.prefix.clone(),
        name: name.to_owned(),
        secret_sha256: secret.sha256.to_vec(),
        scopes: scopes.to_vec(),
        services,
        environments,
        created_unix_nanos: now,
        created_by: who.clone(),
        expires_unix_nanos: now + server::AccessSettings::default().token_default_max_age_nanos,
        last_used_unix_nanos: None,
        revoked_unix_nanos: None,
        superseded_by: None,
        rotated_from: None,
    })?;
    accounts.append_audit(&[store::NewAuditRecord {
        time_unix_nanos: now,
        principal: who,
        action: "token.create".into(),
        resource: format!("token/{}", secret.prefix),
        outcome: "ok: created from the data directory".into(),
        client_addr: "local".into(),
        request_id: "cli".into(),
    }])?;
    tracing::info!(prefix = %secret.prefix, "token created in the data directory; its secret is shown only now");
    out(&secret.secret)
}

pub(crate) fn run_audit(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify { data } => {
            let accounts = data.open_accounts_read_only()?;
            match accounts.verify_audit()? {
                Ok(records) => out(&format!("audit log intact: {records} records verified")),
                Err(broken) => bail!("the audit log was tampered with: {broken}"),
            }
        }
        AuditCommand::Export { data, since } => {
            let since = match since {
                Some(text) => {
                    let time: jiff::Timestamp = text.parse().with_context(|| {
                        format!("`--since` = `{text}` is not an RFC 3339 time such as `2026-11-01T00:00:00Z`")
                    })?;
                    u64::try_from(time.as_nanosecond()).unwrap_or(0)
                }
                None => 0,
            };
            let accounts = data.open_accounts_read_only()?;
            let mut stdout = std::io::stdout().lock();
            let mut after = 0;
            loop {
                let page = accounts.audit_records(since, after, 1_000)?;
                for record in &page {
                    let time = jiff::Timestamp::from_nanosecond(i128::from(record.time_unix_nanos))
                        .map(|t| t.to_string())
                        .unwrap_or_default();
                    let line = record.to_json(time);
                    writeln!(stdout, "{line}").context("writing to standard output")?;
                }
                match page.last() {
                    Some(last) if page.len() == 1_000 => after = last.seq,
                    _ => return Ok(()),
                }
            }
        }
    }
}
