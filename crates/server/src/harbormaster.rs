//! Harbormaster "Make HTTP Request" build steps, named by their URI's query (Harbormaster
//! fills in `${target.phid}`, `${build.id}`, `${buildable.revision}`, `${buildable.commit}` and
//! `${repository.callsign}`); the step's credential (HTTP Basic, from Passphrase) carries the
//! integration's secret as its password, compared in constant time before anything else is
//! read.
//! - `POST /hooks/phabricator/{integration}/harbormaster` asks for the tagging gate. The answer
//!   is immediate; the result goes back through Conduit from the outbox.
//! - `POST /hooks/phabricator/{integration}/deployed` is the last step of a deploy plan: it runs
//!   only when the steps before it passed, and records a deploy of the commit to the environment
//!   its URI names, for the services whose `deploy_from` takes a deployment there.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use jobs::gate::HarbormasterBuild;
use model::ForgeKind;
use serde_json::{Value as Json_, json};
use subtle::ConstantTimeEq;

use crate::AppState;
use edge::error::{ApiError, ErrorCode};

/// The query a gate step's URI carries.
const EXAMPLE_URI: &str = "/harbormaster?target=${target.phid}&revision=${buildable.revision}&commit=${buildable.commit}&repository=${repository.callsign}";

/// The query a deploy plan's last step carries.
const DEPLOYED_URI: &str = "/deployed?environment=production&build=${build.id}&commit=${buildable.commit}&repository=${repository.callsign}";

pub(crate) async fn build_step(
    State(state): State<Arc<AppState>>,
    Path(integration_name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<Json_>), ApiError> {
    let integration = phabricator_integration(&state, &integration_name)?;
    check_credential(&headers, &integration.secret, &integration_name)?;
    let build = read_build(&integration_name, &query)?;
    let jobs = Arc::clone(&state.jobs);
    let answered = build.clone();
    let answer =
        tokio::task::spawn_blocking(move || jobs::gate::answer_harbormaster(&jobs, &answered))
            .await
            .map_err(ApiError::internal)??;
    tracing::info!(
        integration = %integration_name,
        target = %build.target_phid,
        passed = answer.passed,
        summary = %answer.summary,
        "tagging gate answered a Harbormaster build"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "status": "accepted",
            "outcome": if answer.passed { "pass" } else { "fail" },
            "services": answer.services,
            "summary": answer.summary,
            "message": format!("the result goes to {} through harbormaster.sendmessage", build.target_phid),
        })),
    ))
}

pub(crate) async fn deployed(
    State(state): State<Arc<AppState>>,
    Path(integration_name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<Json_>), ApiError> {
    let integration = phabricator_integration(&state, &integration_name)?;
    check_credential(&headers, &integration.secret, &integration_name)?;
    let value = |key: &str| query.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
    let missing = |key: &str, variable: &str| {
        ApiError::invalid(format!(
            "no `{key}` in the query (`{variable}`): set the step's URI to <spanblame>/hooks/phabricator/{integration_name}{DEPLOYED_URI}"
        ))
    };
    let environment = value("environment")
        .ok_or_else(|| missing("environment", "the environment the plan deploys to"))?;
    let build = value("build").ok_or_else(|| missing("build", "${build.id}"))?;
    if !build.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid(format!(
            "`build` = `{build}` is not a build number: use `${{build.id}}`"
        )));
    }
    let commit = value("commit").ok_or_else(|| missing("commit", "${buildable.commit}"))?;
    if !model::looks_like_sha(commit) {
        return Err(ApiError::invalid(format!(
            "`commit` = `{commit}` is not a commit id: use `${{buildable.commit}}`, and run the plan on commits, not diffs"
        )));
    }
    let callsign =
        value("repository").ok_or_else(|| missing("repository", "${repository.callsign}"))?;
    let event = forge::DeployEvent {
        repository: forge::Repository { full_name: format!("r{callsign}"), ..Default::default() },
        kind: forge::DeployEventKind::Build { environment: environment.to_owned() },
        id: build.to_owned(),
        commit: Some(commit.to_ascii_lowercase()),
        deployer: None,
        url: integration.api_url.as_ref().map(|base| format!("{base}/harbormaster/build/{build}/")),
        started_at_unix_secs: None,
        finished_at_unix_secs: None,
    };
    let integration_name = integration.name.clone();
    crate::hooks::record_deploys(
        &state,
        &integration_name,
        ForgeKind::Phabricator,
        "harbormaster",
        event,
    )
    .await
}

fn phabricator_integration<'a>(
    state: &'a AppState,
    name: &str,
) -> Result<&'a views::Integration, ApiError> {
    state.settings.changes.integration(ForgeKind::Phabricator, name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!(
                "no `phabricator` integration named `{name}` is configured; add `[[integrations]]` with name = \"{name}\" and kind = \"phabricator\""
            ),
        )
    })
}

/// HTTP Basic credentials whose password is the integration's secret (the user name is not
/// read); 401 otherwise, naming the fix.
fn check_credential(headers: &HeaderMap, secret: &[u8], integration: &str) -> Result<(), ApiError> {
    let refuse = |why: &str| {
        ApiError::new(
            ErrorCode::Unauthenticated,
            format!(
                "{why}: give the Harbormaster step a Passphrase credential (Username/Password) whose password is integration `{integration}`'s secret"
            ),
        )
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refuse("no credentials"))?;
    let encoded = value
        .strip_prefix("Basic ")
        .ok_or_else(|| refuse("the `Authorization` header is not HTTP Basic"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| refuse("the HTTP Basic credentials are not base64"))?;
    let password = match decoded.iter().position(|&b| b == b':') {
        Some(colon) => &decoded[colon + 1..],
        None => return Err(refuse("the HTTP Basic credentials have no password")),
    };
    if secret.is_empty() || !bool::from(password.ct_eq(secret)) {
        return Err(refuse("the password differs from the integration's secret"));
    }
    Ok(())
}

/// The build the query names; 400 naming the missing or malformed variable.
fn read_build(
    integration: &str,
    query: &HashMap<String, String>,
) -> Result<HarbormasterBuild, ApiError> {
    let value = |key: &str| query.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
    let target = value("target").ok_or_else(|| {
        ApiError::invalid(format!(
            "no `target` in the query: set the step's URI to <spanblame>/hooks/phabricator/{integration}{EXAMPLE_URI}"
        ))
    })?;
    if !target.starts_with("PHID-HMBT-") || !target[10..].bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(ApiError::invalid(format!(
            "`target` = `{target}` is not a build target PHID (PHID-HMBT-...): use `${{target.phid}}`"
        )));
    }
    let revision = match value("revision") {
        Some(text) => Some(text.trim_start_matches('D').parse::<u64>().map_err(|_| {
            ApiError::invalid(format!(
                "`revision` = `{text}` is not a revision number: use `${{buildable.revision}}`"
            ))
        })?),
        None => None,
    };
    let commit = match value("commit") {
        Some(sha) if !model::looks_like_sha(sha) => {
            return Err(ApiError::invalid(format!(
                "`commit` = `{sha}` is not a commit id: use `${{buildable.commit}}`"
            )));
        }
        other => other.map(str::to_ascii_lowercase),
    };
    let callsign = value("repository").map(str::to_owned);
    let services = value("service")
        .map(|s| s.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    Ok(HarbormasterBuild {
        integration: integration.to_owned(),
        target_phid: target.to_owned(),
        revision,
        commit,
        callsign,
        services,
    })
}
