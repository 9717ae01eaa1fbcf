//! `spanblame check-config`: the configuration as it would run, printed on stdout (a short
//! report, or one JSON object with `--json`); open doors as warnings on stderr; problems as an
//! error naming each key, problem and fix, and a non-zero exit.

use std::collections::BTreeMap;

use serde_json::{Value as Json_, json};

/// Validates, then reports what would run and what the stores answer.
pub(crate) fn run(
    file: Option<&std::path::Path>,
    env: &BTreeMap<String, String>,
    as_json: bool,
) -> anyhow::Result<()> {
    let config = config::load(file, env)?;
    let resolved = config::resolve(&config, env)?;
    let settings = &resolved.settings;
    let warnings = config::open_doors(&settings.access);
    for door in &warnings {
        tracing::warn!("{door}");
    }
    let (applied, known) = store::metadata_schema_versions(&resolved.data_dir, &resolved.metadata)?;
    let mut report = json!({
        "valid": true,
        "listen": {
            "http": settings.http_addr.to_string(),
            "otlp_grpc": settings.otlp_grpc_addr.to_string(),
            "otlp_http": settings.otlp_http_addr.to_string(),
            "zipkin": settings.zipkin_addr.to_string(),
        },
        "data_dir": resolved.data_dir.display().to_string(),
        "auth": crate::describe_auth(&settings.access.mode),
        "ingest_open": settings.access.ingest_open,
        "deploys_open": settings.access.deploys_open,
        "integrations": settings.changes.integrations.len(),
        "repositories": settings.changes.repositories.len(),
        "services": settings.changes.services.len(),
        "alertmanagers": settings.notifications.alertmanagers.len(),
        "alert_webhooks": settings.notifications.webhooks.len(),
        "forges_posting_findings": settings.notifications.forges.len(),
        "gate": {
            "required": settings.changes.gate.required.iter().map(|c| c.name()).collect::<Vec<_>>(),
            "environments": settings.changes.gate.environments,
            "window": window_text(settings.changes.gate.window_nanos),
        },
        "forge_deploys": settings
            .changes
            .services
            .iter()
            .filter(|s| !s.deploy_from.is_empty())
            .map(|s| (s.service.clone(), s.deploy_from.iter().map(|t| t.text()).collect::<Vec<_>>()))
            .collect::<BTreeMap<_, _>>(),
        "metadata": {
            "store": resolved.metadata.describe(&resolved.data_dir),
            "schema_version": applied,
            "expected_schema_version": known,
            "state": schema_state(applied, known),
        },
        "warnings": warnings,
    });
    if let store::SpanBackend::ClickHouse(options) = &resolved.store {
        let nodes: Vec<Json_> = store::clickhouse::check(options)?
            .into_iter()
            .map(|node| {
                json!({
                    "url": node.url,
                    "server_version": node.server_version,
                    "schema_version": node.schema_version,
                    "expected_schema_version": store::clickhouse::SCHEMA_VERSION,
                    "state": schema_state(node.schema_version, store::clickhouse::SCHEMA_VERSION),
                })
            })
            .collect();
        report["clickhouse"] = nodes.into();
    }
    let text = if as_json { serde_json::to_string_pretty(&report)? } else { human(&report) };
    crate::admin::out(&text)
}

/// `[gate] window` as written in the configuration's units (`30m`, `2h`, `90s`).
fn window_text(nanos: u64) -> String {
    let secs = nanos / 1_000_000_000;
    match secs {
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Where a schema stands against this build's, in words.
fn schema_state(applied: u32, known: u32) -> String {
    match applied {
        0 => "empty: `serve` or `spanblame migrate` creates the schema".to_owned(),
        a if a < known => "behind: run `spanblame migrate` (or `serve` applies it)".to_owned(),
        a if a > known => {
            "newer than this build: `serve` refuses it; run a newer spanblame".to_owned()
        }
        _ => "current".to_owned(),
    }
}

/// The report as a few aligned lines.
fn human(report: &Json_) -> String {
    let text = |v: &Json_| match v {
        Json_::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut lines = vec!["configuration is valid".to_owned()];
    let mut row = |key: &str, value: String| lines.push(format!("  {key:<14} {value}"));
    let listen = &report["listen"];
    row("http", text(&listen["http"]));
    row("otlp grpc", text(&listen["otlp_grpc"]));
    row("otlp http", text(&listen["otlp_http"]));
    row("zipkin", text(&listen["zipkin"]));
    row("data dir", text(&report["data_dir"]));
    row("auth", text(&report["auth"]));
    let open = |key: &str| if report[key] == true { "open" } else { "needs a token" };
    row("ingest", open("ingest_open").to_owned());
    row("deploy reports", open("deploys_open").to_owned());
    row(
        "change graph",
        format!(
            "{} integrations, {} repositories, {} services",
            report["integrations"], report["repositories"], report["services"]
        ),
    );
    row(
        "notifications",
        format!(
            "{} Alertmanagers, {} webhooks, {} forges posting findings",
            report["alertmanagers"], report["alert_webhooks"], report["forges_posting_findings"]
        ),
    );
    let gate = &report["gate"];
    let names = |v: &Json_| {
        let names: Vec<String> = v.as_array().into_iter().flatten().map(text).collect();
        if names.is_empty() { "none".to_owned() } else { names.join(", ") }
    };
    row(
        "tagging gate",
        format!(
            "requires {}; spans looked for in {} (last {})",
            names(&gate["required"]),
            names(&gate["environments"]),
            text(&gate["window"])
        ),
    );
    let deployed: Vec<String> = report["forge_deploys"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(service, triggers)| format!("{service} from {}", names(triggers)))
        .collect();
    row(
        "forge deploys",
        if deployed.is_empty() {
            "none (no `deploy_from`)".to_owned()
        } else {
            deployed.join("; ")
        },
    );
    let metadata = &report["metadata"];
    row(
        "metadata",
        format!(
            "{}: schema {} of {}, {}",
            text(&metadata["store"]),
            metadata["schema_version"],
            metadata["expected_schema_version"],
            text(&metadata["state"])
        ),
    );
    for node in report["clickhouse"].as_array().into_iter().flatten() {
        row(
            "clickhouse",
            format!(
                "{} (server {}): schema {} of {}, {}",
                text(&node["url"]),
                text(&node["server_version"]),
                node["schema_version"],
                node["expected_schema_version"],
                text(&node["state"])
            ),
        );
    }
    for warning in report["warnings"].as_array().into_iter().flatten() {
        lines.push(format!("  warning: {}", text(warning)));
    }
    lines.join("\n")
}
