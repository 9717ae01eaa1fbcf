//! `spanblame deploy`: the CI side of `POST /api/v1/deploys`. It sends what it is given,
//! prints what the server recorded, and turns the server's JSON errors into plain messages.

use std::io::Write;

use anyhow::Context;
use serde_json::json;

use crate::client::ApiCall;

#[derive(Debug, clap::Args)]
pub(crate) struct DeployArgs {
    /// The service that was deployed (its `service.name`).
    #[arg(long)]
    service: String,
    /// The environment (its `deployment.environment.name`), e.g. `production`.
    #[arg(long, alias = "environment")]
    env: String,
    /// The version now running (its `service.version`).
    #[arg(long)]
    version: String,
    /// The full commit sha the version was built from.
    #[arg(long)]
    commit: Option<String>,
    /// The repository (a configured `[[repositories]]` name or URL).
    #[arg(long)]
    repository: Option<String>,
    /// When the deploy started (RFC 3339); defaults to now on the server.
    #[arg(long, value_name = "TIME")]
    started_at: Option<String>,
    /// When the deploy finished (RFC 3339).
    #[arg(long, value_name = "TIME")]
    finished_at: Option<String>,
    /// Who or what deployed (a person, or the CI job).
    #[arg(long)]
    deployer: Option<String>,
    /// This deploy rolls back to an earlier version.
    #[arg(long)]
    rollback: bool,
    /// A link to the CI run or change ticket.
    #[arg(long)]
    url: Option<String>,
    /// The spanblame server (`http://host:port`, or `https://` behind a TLS proxy).
    #[arg(long, env = "SPANBLAME_SERVER", default_value = "http://127.0.0.1:7420")]
    server: String,
    /// A token allowed to report deploys (sent as `Authorization: Bearer`).
    #[arg(long, env = "SPANBLAME_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the recorded deploy as the server's JSON instead of a line of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &DeployArgs) -> anyhow::Result<()> {
    let mut body = json!({
        "service": args.service,
        "environment": args.env,
        "version": args.version,
        "is_rollback": args.rollback,
    });
    for (key, value) in [
        ("commit", &args.commit),
        ("repository", &args.repository),
        ("started_at", &args.started_at),
        ("finished_at", &args.finished_at),
        ("deployer", &args.deployer),
        ("url", &args.url),
    ] {
        if let Some(value) = value {
            body[key] = value.clone().into();
        }
    }
    let (answer, _) = ApiCall {
        server: &args.server,
        path: "/api/v1/deploys",
        token: args.token.as_deref(),
        timeout: std::time::Duration::from_secs(30),
        sending: "sending the deploy to",
        refused: "the deploy",
    }
    .post(&body)?;
    let line = if args.json {
        answer.to_string()
    } else {
        // A token that may only report deploys is told the id and little else.
        let previous = match answer.get("previous") {
            Some(serde_json::Value::Null) => ", the first known deploy there".to_owned(),
            Some(previous) => format!(", after {}", previous["version"].as_str().unwrap_or("?")),
            None => String::new(),
        };
        let commit = answer["commit_sha"]
            .as_str()
            .or(args.commit.as_deref())
            .map_or("unknown".to_owned(), |sha| sha[..sha.len().min(12)].to_owned());
        format!(
            "deploy {} recorded: {} {} to {}, commit {commit}{previous} ({})",
            answer["id"],
            args.service,
            args.version,
            args.env,
            answer["source"].as_str().unwrap_or("?"),
        )
    };
    // The command's result is its output; logs stay on stderr.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").context("writing to standard output")?;
    Ok(())
}
