//! `spanblame gate`: the CI side of `POST /api/v1/gate`. It asks whether a change will be
//! attributable once deployed, prints each check with what was found and the fix, and exits
//! 0 (pass), 1 (fail) or 2 (cannot tell yet, or no answer from the server).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::client::ApiCall;

#[derive(Debug, clap::Args)]
pub(crate) struct GateArgs {
    /// The service the change belongs to (its `service.name`).
    #[arg(long)]
    service: String,
    /// The change's head commit (the full sha, or at least 7 hex digits).
    #[arg(long)]
    commit: String,
    /// Where the change runs already (staging, CI), whose spans must say their version and
    /// commit; defaults to the server's `[gate] environments`.
    #[arg(long, alias = "env")]
    environment: Option<String>,
    /// The commit is a review's head that runs nowhere yet: judge the service's latest spans
    /// instead of waiting for spans of this commit.
    #[arg(long)]
    under_review: bool,
    /// The spanblame server (`http://host:port`, or `https://` behind a TLS proxy).
    #[arg(long, env = "SPANBLAME_SERVER", default_value = "http://127.0.0.1:7420")]
    server: String,
    /// A token with the `deploy` scope (sent as `Authorization: Bearer`).
    #[arg(long, env = "SPANBLAME_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the server's report as JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Exit codes: the gate's outcome, for CI to branch on.
const PASS: u8 = 0;
const FAIL: u8 = 1;
const CANNOT_TELL: u8 = 2;

pub(crate) fn main(args: &GateArgs) -> ExitCode {
    match run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // No answer is not a failed gate: CI can tell the two apart.
            tracing::error!("cannot tell: {e:#}");
            ExitCode::from(CANNOT_TELL)
        }
    }
}

fn run(args: &GateArgs) -> anyhow::Result<u8> {
    let mut body = json!({
        "service": args.service,
        "commit": args.commit,
        "under_review": args.under_review,
    });
    if let Some(environment) = &args.environment {
        body["environment"] = environment.clone().into();
    }
    let (report, text) = ApiCall {
        server: &args.server,
        path: "/api/v1/gate",
        token: args.token.as_deref(),
        timeout: std::time::Duration::from_secs(60),
        sending: "asking",
        refused: "the request",
    }
    .post(&body)?;
    let code = match report["outcome"].as_str() {
        Some("pass") => PASS,
        Some("fail") => FAIL,
        Some("cannot_tell") => CANNOT_TELL,
        _ => bail!("the server's answer has no outcome: {text}"),
    };
    let out = if args.json { report.to_string() } else { describe(&report) };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{out}").context("writing to standard output")?;
    Ok(code)
}

/// The report in lines: the outcome, then each check with what was found and the fix.
fn describe(report: &Value) -> String {
    let mut out = format!(
        "tagging gate for {} at {}: {}\n",
        report["service"].as_str().unwrap_or("?"),
        report["commit"].as_str().map_or("?".into(), |c| c.chars().take(12).collect::<String>()),
        report["summary"].as_str().unwrap_or("?"),
    );
    for check in report["checks"].as_array().into_iter().flatten() {
        let outcome = check["outcome"].as_str().unwrap_or("?");
        let advice = if check["required"] == true { "" } else { " (advice)" };
        out.push_str(&format!(
            "  {:<11} {}{advice}: {}\n",
            outcome,
            check["name"].as_str().unwrap_or("?"),
            check["found"].as_str().unwrap_or(""),
        ));
        if let Some(fix) = check["fix"].as_str() {
            out.push_str(&format!("              fix: {fix}\n"));
        }
    }
    out.trim_end().to_owned()
}
