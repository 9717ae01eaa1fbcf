//! Delivery: sends one outbox row and records the attempt: delivered, retried after a jittered
//! back-off (or the receiver's `Retry-After`), or dead after `max_attempts` or a refusal that
//! retrying cannot fix. The job that runs it (`notify::run_deliveries`) gives each row its own
//! task, so a slow receiver holds only its own messages. A webhook alert is signed per Standard
//! Webhooks when its sink has a secret; a sink's credentials go in `Authorization`. The
//! notifications API (list, retry a dead one) is the server's.

use std::sync::Arc;
use std::time::Duration;

use store::{AttemptOutcome, Delivery, StoreError};

use super::sinks::{AlertSink, SinkAuth};
use crate::Jobs;
use crate::outbound::{error_chain, read_capped};

/// The most of an answer read (for error messages and Conduit's envelope).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Sends every delivery due now once, one after another, and records the attempts: the job's
/// work without its timer, for tests. Returns how many were attempted.
pub async fn deliver_due(jobs: &Arc<Jobs>) -> Result<usize, StoreError> {
    let now = jobs.ctx.clock.now_unix_nanos();
    let due = {
        let jobs = Arc::clone(jobs);
        tokio::task::spawn_blocking(move || jobs.ctx.store.due_deliveries(now, 10_000))
            .await
            .map_err(|e| StoreError::Metadata(e.to_string()))??
    };
    let attempted = due.len();
    for delivery in due {
        deliver_one(jobs, delivery).await?;
    }
    Ok(attempted)
}

pub(super) async fn deliver_one(jobs: &Arc<Jobs>, delivery: Delivery) -> Result<(), StoreError> {
    let outcome = match attempt(jobs, &delivery).await {
        Ok((status, result)) => {
            tracing::info!(delivery = delivery.id, sink = %delivery.sink, target = %delivery.target, result = result.as_deref().unwrap_or(""), "notification delivered");
            jobs.telemetry.delivery(&delivery.sink, "delivered");
            AttemptOutcome::Delivered { status, result }
        }
        Err(failure) => {
            let retry = &jobs.notifications.retry;
            let attempts = delivery.attempts + 1;
            let retry_at = (!failure.permanent && attempts < retry.max_attempts).then(|| {
                let delay = super::message::retry_delay(
                    attempts,
                    retry.initial_backoff,
                    retry.max_backoff,
                    &delivery.idempotency_key,
                )
                .max(failure.retry_after.unwrap_or_default());
                jobs.ctx.clock.now_unix_nanos() + delay.as_nanos() as u64
            });
            jobs.telemetry
                .delivery(&delivery.sink, if retry_at.is_some() { "retried" } else { "dead" });
            if retry_at.is_some() {
                tracing::warn!(delivery = delivery.id, sink = %delivery.sink, attempts, error = %failure.message, "notification failed; will retry");
            } else {
                tracing::error!(delivery = delivery.id, sink = %delivery.sink, attempts, error = %failure.message, "notification dead-lettered: retry it with POST /api/v1/notifications/{{id}}/retry once the receiver is fixed");
            }
            AttemptOutcome::Failed {
                status: failure.status,
                error: failure.message,
                retry_at_unix_nanos: retry_at,
            }
        }
    };
    let jobs = Arc::clone(jobs);
    tokio::task::spawn_blocking(move || {
        let now = jobs.ctx.clock.now_unix_nanos();
        jobs.ctx.store.record_attempt(delivery.id, &outcome, now)
    })
    .await
    .map_err(|e| StoreError::Metadata(e.to_string()))?
}

/// The sink's credentials on its request.
fn authorized(builder: reqwest::RequestBuilder, sink: &AlertSink) -> reqwest::RequestBuilder {
    match &sink.auth {
        Some(SinkAuth::Bearer(token)) => builder.bearer_auth(token),
        Some(SinkAuth::Basic { username, password }) => {
            builder.basic_auth(username, Some(password))
        }
        None => builder,
    }
}

struct Failure {
    status: Option<u16>,
    message: String,
    /// Retrying cannot help (the request itself is wrong, or its receiver is gone).
    permanent: bool,
    retry_after: Option<Duration>,
}

impl Failure {
    fn new(message: impl Into<String>) -> Failure {
        Failure { status: None, message: message.into(), permanent: false, retry_after: None }
    }

    fn permanent(message: impl Into<String>) -> Failure {
        Failure { permanent: true, ..Failure::new(message) }
    }
}

/// One attempt; the receiver's status when it took the message, and what it made there.
async fn attempt(jobs: &Jobs, delivery: &Delivery) -> Result<(u16, Option<String>), Failure> {
    let client = jobs.http.as_ref().map_err(|e| Failure::new(format!("no HTTP client: {e}")))?;
    let (kind, name) = delivery.sink.split_once(':').unwrap_or((&delivery.sink, ""));
    let gone = |section: &str| {
        Failure::permanent(format!(
            "no `{section}` named `{name}` in the configuration anymore; restore it and retry"
        ))
    };
    let api_access = || {
        let integration = jobs.ctx.changes.integrations.iter().find(|i| i.name == name);
        let integration = integration.ok_or_else(|| gone("[[integrations]]"))?;
        match (&integration.api_url, &integration.api_token) {
            (Some(api_url), Some(token)) => Ok((integration, api_url, token)),
            _ => Err(Failure::permanent(format!(
                "integration `{name}` has no `api_url` or API token; set `api_url` and `api_token_env`, then retry"
            ))),
        }
    };
    if delivery.kind == "revert" {
        let (integration, _, _) = api_access()?;
        return crate::revert::send(jobs, client, integration, &delivery.request)
            .await
            .map(|(status, revision)| (status, Some(revision)))
            .map_err(|failure| Failure {
                status: failure.status,
                message: failure.message,
                permanent: failure.permanent,
                retry_after: None,
            });
    }
    let request: forge::api::ApiRequest = serde_json::from_str(&delivery.request)
        .map_err(|e| Failure::permanent(format!("the stored request is not readable: {e}")))?;
    let mut forge_kind = None;
    let builder = match kind {
        "alertmanager" => {
            let sink = jobs.notifications.alertmanagers.iter().find(|s| s.name == name);
            let sink = sink.ok_or_else(|| gone("[[alerts.alertmanager]]"))?;
            let url = format!("{}{}", sink.url.trim_end_matches('/'), request.path);
            authorized(client.post(url).json(&request.body), sink)
        }
        "webhook" => {
            let sink = jobs.notifications.webhooks.iter().find(|s| s.name == name);
            let sink = sink.ok_or_else(|| gone("[[alerts.webhook]]"))?;
            let body = serde_json::to_vec(&request.body)
                .map_err(|e| Failure::permanent(format!("the alert is not JSON: {e}")))?;
            let mut builder = client
                .post(&sink.url)
                .header("idempotency-key", &delivery.idempotency_key)
                .header("content-type", "application/json");
            if let Some(secret) = &sink.signing_secret {
                // Standard Webhooks: the id is the same on every attempt, the time is this one's.
                let id = &delivery.idempotency_key;
                let timestamp = (jobs.ctx.clock.now_unix_nanos() / 1_000_000_000).to_string();
                let signature = forge::standard_webhook_signature(secret, id, &timestamp, &body)
                    .ok_or_else(|| {
                        Failure::permanent(format!(
                            "webhook `{name}`'s signing secret is not base64; set a `whsec_...` secret"
                        ))
                    })?;
                builder = builder
                    .header("webhook-id", id)
                    .header("webhook-timestamp", timestamp)
                    .header("webhook-signature", signature);
            }
            authorized(builder.body(body), sink)
        }
        "forge" => {
            let (integration, api_url, token) = api_access()?;
            forge_kind = Some(integration.kind);
            let prepared = forge::api::prepare(integration.kind, &request, token);
            let url = format!("{}{}", api_url.trim_end_matches('/'), request.path);
            let mut builder = client
                .request(request.method.parse().unwrap_or(reqwest::Method::POST), url)
                .header("content-type", prepared.content_type)
                .body(prepared.body);
            for (header, value) in prepared.headers {
                builder = builder.header(header, value);
            }
            builder
        }
        _ => return Err(Failure::permanent(format!("unknown receiver `{}`", delivery.sink))),
    };
    let response = builder.send().await.map_err(|e| Failure::new(error_chain(&e)))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs.min(3600)));
    let body = read_capped(response, MAX_ANSWER_BYTES).await.unwrap_or_default();
    // A forge's answer is read the forge's way (Conduit refuses with HTTP 200); any other
    // receiver's by its status alone.
    let taken = match forge_kind {
        Some(kind) => forge::api::read_answer(kind, status, &body),
        None => forge::api::http_status(status, &body),
    };
    taken.map(|()| (status, None)).map_err(|refusal| Failure {
        status: Some(status),
        message: refusal.message,
        permanent: refusal.permanent,
        retry_after,
    })
}
