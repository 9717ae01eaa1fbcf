//! `POST /hooks/{kind}/{integration}`: forge webhooks into the change graph.
//!
//! Order matters and is the security boundary: cap the body, find the integration, verify
//! the signature on the raw bytes (`forge::verify`; or, for a relay, a token with the
//! `webhook` scope), and only then parse. A Herald pointer is
//! then followed through Conduit (`crate::phabricator`); a deployment or release becomes the
//! deploys of the services whose `deploy_from` takes it (`jobs::forge_deploys`), each
//! recorded once per event. Every refusal (401 bad signature,
//! 400 malformed, 202 unknown event, 502 Conduit failed) stores nothing; an accepted delivery
//! is stored in one transaction together with its delivery key, so a redelivery is answered
//! 200 and changes nothing.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use forge::{Headers, WebhookError, WebhookEvent};
use model::ForgeKind;
use serde_json::{Value as Json_, json};
use store::{Applied, BranchHead, ChangeBatch};

use crate::{AppState, phabricator};
use edge::access::Caller;
use edge::error::{ApiError, ErrorCode};

/// How far a Standard Webhooks signature's timestamp may be from this server's clock (the
/// specification's suggestion), so a captured delivery cannot be replayed later.
const SIGNED_TIMESTAMP_TOLERANCE_SECS: u64 = 5 * 60;

/// GitHub's own cap on webhook payloads; no forge sends more.
pub(crate) const MAX_WEBHOOK_BYTES: usize = 25 * 1024 * 1024;

pub(crate) async fn receive(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path((kind_name, integration_name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Json_>), ApiError> {
    let kind = ForgeKind::parse(&kind_name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!(
                "`{kind_name}` is not a forge kind; use one of gogs, gitea, forgejo, github, gitlab, phabricator"
            ),
        )
    })?;
    let integration = state.settings.changes.integration(kind, &integration_name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!(
                "no `{kind}` integration named `{integration_name}` is configured; add `[[integrations]]` with name = \"{integration_name}\" and kind = \"{kind}\""
            ),
        )
    })?;
    // Only a delivery for a configured integration is read at all, against the same memory
    // budget as exports (reserved until the delivery is handled).
    let mut intake = crate::ingest::Intake::webhook(&state);
    let body = intake.read_body_within(body, MAX_WEBHOOK_BYTES, "GitHub's 25 MiB").await?;

    let mut forge_headers = Headers::new();
    for (name, value) in &headers {
        if let Ok(value) = value.to_str() {
            forge_headers.insert(name.as_str(), value);
        }
    }
    // A relay holding a `webhook`-scoped token instead of the forge's secret (the guard has
    // already authenticated it).
    let relayed = match headers.get(axum::http::header::AUTHORIZATION) {
        Some(_) => {
            let principal = &caller.principal;
            if !principal.has_scope(auth::Scope::Webhook) {
                return Err(ApiError::new(
                    ErrorCode::PermissionDenied,
                    format!(
                        "`{}` may not deliver webhooks: it needs a token with the `webhook` scope (or send the forge's signature without an `Authorization` header)",
                        principal.id
                    ),
                ));
            }
            true
        }
        None => false,
    };
    let verified = if relayed {
        forge::read_delivery(kind, &forge_headers, &body)
    } else {
        forge::verify(kind, &integration.secret, &forge_headers, &body)
    }
    .map_err(|e| webhook_error(&integration.name, e))?;
    if let Some(signed_at) = verified.signed_at_unix_secs {
        let now_secs = state.ctx().clock.now_unix_nanos() / 1_000_000_000;
        let skew_secs = now_secs.abs_diff(signed_at);
        if skew_secs > SIGNED_TIMESTAMP_TOLERANCE_SECS {
            return Err(ApiError::new(
                ErrorCode::Unauthenticated,
                format!(
                    "integration `{}`: the signed `webhook-timestamp` is {skew_secs} s away from this server's clock (at most {SIGNED_TIMESTAMP_TOLERANCE_SECS} s): an old delivery replayed, or a clock to fix; nothing was stored",
                    integration.name
                ),
            ));
        }
    }
    let event = forge::parse(kind, &verified.event, &verified.json)
        .map_err(|e| webhook_error(&integration.name, e))?;

    // A pull/merge request's new head, for the tagging gate once the delivery is applied.
    let mut gated: Option<(String, model::Review)> = None;
    let batch = match event {
        WebhookEvent::Ping { reason } => {
            tracing::info!(integration = %integration.name, %reason, "webhook ping");
            return Ok((StatusCode::OK, Json(json!({"status": "ok", "event": verified.event}))));
        }
        WebhookEvent::Ignored { event, reason } => {
            tracing::info!(integration = %integration.name, %event, %reason, "ignored webhook event");
            return Ok((
                StatusCode::ACCEPTED,
                Json(json!({"status": "ignored", "event": event,
                    "message": format!("{reason}; nothing was stored")})),
            ));
        }
        WebhookEvent::Deploy(event) => {
            return record_deploys(&state, &integration.name, kind, &verified.event, event).await;
        }
        WebhookEvent::Herald(pointer) => {
            // A redelivery (Phorge retries with the same bytes) is known by its key: answer
            // before the Conduit calls it would repeat.
            let seen = {
                let store = Arc::clone(&state.ctx().store);
                let (name, key) = (integration.name.clone(), verified.delivery_key.clone());
                tokio::task::spawn_blocking(move || store.webhook_applied(&name, &key))
                    .await
                    .map_err(ApiError::internal)??
            };
            if seen {
                return Ok((
                    StatusCode::OK,
                    Json(
                        json!({"status": "duplicate", "event": verified.event, "commits": 0, "reviews": 0}),
                    ),
                ));
            }
            match phabricator::follow(&state, integration, &pointer).await {
                Ok(Some(batch)) => batch,
                Ok(None) => {
                    let followed = ["PHID-DREV-", "PHID-CMIT-"]
                        .iter()
                        .any(|prefix| pointer.object_phid.starts_with(prefix));
                    let message = if followed {
                        format!(
                            "`{}` is not a revision or commit the integration's API token can see; nothing was stored",
                            pointer.object_phid
                        )
                    } else {
                        format!(
                            "`{}` is not used: spanblame follows Herald's revisions (PHID-DREV) and commits (PHID-CMIT), and reads repositories and diffs through them; nothing was stored",
                            pointer.object_phid
                        )
                    };
                    tracing::info!(integration = %integration.name, object = %pointer.object_phid, %message, "Herald object not followed");
                    return Ok((
                        StatusCode::ACCEPTED,
                        Json(json!({"status": "ignored", "event": "herald", "message": message})),
                    ));
                }
                Err(e) => {
                    tracing::warn!(integration = %integration.name, object = %pointer.object_phid,
                        error = %e, "following a Herald webhook failed");
                    return Err(ApiError::new(
                        ErrorCode::BadGateway,
                        format!(
                            "integration `{}`: fetching `{}` through Conduit failed: {e}; nothing was stored, and Phabricator will deliver again",
                            integration.name, pointer.object_phid
                        ),
                    ));
                }
            }
        }
        WebhookEvent::Push(push) => ChangeBatch {
            repository: repository_name(&state, &push.repository),
            branch_head: push.ref_name.strip_prefix("refs/heads/").map(|branch| BranchHead {
                branch: branch.to_owned(),
                sha: (!model::is_null_sha(&push.after)).then(|| push.after.clone()),
                forced: push.forced,
            }),
            commits: push.commits,
            reviews: Vec::new(),
        },
        WebhookEvent::Review(event) => {
            let repository = repository_name(&state, &event.repository);
            gated = Some((repository.clone(), event.review.clone()));
            ChangeBatch { repository, reviews: vec![event.review], ..ChangeBatch::default() }
        }
    };

    let (num_commits, num_reviews) = (batch.commits.len(), batch.reviews.len());
    let store = Arc::clone(&state.ctx().store);
    let now = state.ctx().clock.now_unix_nanos();
    let integration_name = integration.name.clone();
    let key = verified.delivery_key.clone();
    let event_name = verified.event.clone();
    let applied = tokio::task::spawn_blocking(move || {
        store.apply_webhook(&integration_name, &key, &event_name, &batch, now)
    })
    .await
    .map_err(ApiError::internal)??;
    if applied == Applied::New && num_commits > 0 {
        // A push: the mirror has new history to fetch.
        state.jobs.mirror_wake.notify_one();
    }
    if applied == Applied::New
        && let Some((repository, review)) = gated
    {
        answer_gate(&state, &integration.name, repository, review).await;
    }
    let status = match applied {
        Applied::New => "applied",
        Applied::Duplicate => "duplicate",
    };
    tracing::info!(
        integration = %integration.name,
        event = %verified.event,
        delivery = %verified.delivery_key,
        status,
        num_commits,
        num_reviews,
        "webhook"
    );
    Ok((
        StatusCode::OK,
        Json(json!({
            "status": status,
            "event": verified.event,
            "commits": if applied == Applied::New { num_commits } else { 0 },
            "reviews": if applied == Applied::New { num_reviews } else { 0 },
        })),
    ))
}

/// A deployment or release: the deploys of the services whose `deploy_from` takes it. 200
/// with the deploys recorded (none on a redelivery), 202 when no service is deployed by it.
pub(crate) async fn record_deploys(
    state: &Arc<AppState>,
    integration: &str,
    kind: ForgeKind,
    event_name: &str,
    event: forge::DeployEvent,
) -> Result<(StatusCode, Json<Json_>), ApiError> {
    let jobs = Arc::clone(&state.jobs);
    let name = integration.to_owned();
    let now = state.ctx().clock.now_unix_nanos();
    let recorded = tokio::task::spawn_blocking(move || {
        jobs::forge_deploys::record(&jobs, &name, kind, &event, now)
    })
    .await
    .map_err(ApiError::internal)??;
    match recorded {
        jobs::forge_deploys::ForgeDeploys::NoService { reason } => {
            tracing::info!(integration, event = event_name, %reason, "forge deploy not recorded");
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"status": "ignored", "event": event_name,
                    "message": format!("{reason}; nothing was stored")})),
            ))
        }
        jobs::forge_deploys::ForgeDeploys::Recorded { deploys, already } => {
            for deploy in &deploys {
                tracing::info!(
                    integration,
                    deploy = deploy.id,
                    service = %deploy.service,
                    environment = %deploy.environment,
                    version = %deploy.version,
                    source = deploy.source.as_str(),
                    "deploy recorded from a forge event"
                );
            }
            let status =
                if deploys.is_empty() && !already.is_empty() { "duplicate" } else { "applied" };
            let listed: Vec<Json_> = deploys
                .iter()
                .map(|d| {
                    json!({"id": d.id, "service": d.service, "environment": d.environment,
                        "version": d.version, "commit_sha": d.commit, "source": d.source.as_str()})
                })
                .collect();
            Ok((
                StatusCode::OK,
                Json(json!({"status": status, "event": event_name, "deploys": listed,
                    "already_recorded": already})),
            ))
        }
    }
}

/// The tagging gate's commit status for a review's new head (`gate_on_reviews`); a failure
/// is logged, never the webhook's: the delivery is stored either way.
async fn answer_gate(
    state: &Arc<AppState>,
    integration: &str,
    repository: String,
    review: model::Review,
) {
    let jobs = Arc::clone(&state.jobs);
    let name = integration.to_owned();
    let answered = tokio::task::spawn_blocking(move || {
        jobs::gate::answer_review(&jobs, &name, &repository, &review)
    })
    .await;
    match answered {
        Ok(Ok(Some(answer))) => tracing::info!(
            integration,
            passed = answer.passed,
            summary = %answer.summary,
            "tagging gate answered a review's new head"
        ),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::warn!(integration, error = %e, "the tagging gate could not answer"),
        Err(e) => tracing::warn!(integration, error = %e, "the tagging gate could not answer"),
    }
}

/// The configured repository's name when the forge's repository matches one (by name or any
/// URL), otherwise the forge's `owner/name`.
fn repository_name(state: &AppState, repository: &forge::Repository) -> String {
    let names = [
        Some(repository.full_name.as_str()),
        repository.web_url.as_deref(),
        repository.clone_url.as_deref(),
    ];
    state
        .settings
        .changes
        .repository_for(&names)
        .map_or_else(|| repository.full_name.clone(), |r| r.name.clone())
}

fn webhook_error(integration: &str, error: WebhookError) -> ApiError {
    let code = match &error {
        e if e.is_authentication() => ErrorCode::Unauthenticated,
        WebhookError::UnsupportedContentType { .. } => ErrorCode::UnsupportedMediaType,
        _ => ErrorCode::InvalidArgument,
    };
    tracing::warn!(integration, %error, "refused webhook delivery");
    ApiError::new(code, format!("integration `{integration}`: {error}"))
}
