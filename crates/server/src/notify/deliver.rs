//! The delivery job: sends due outbox rows, each on its own task so a slow receiver holds only
//! its own messages, and records every attempt: delivered, retried after a jittered back-off
//! (or the receiver's `Retry-After`), or dead after `max_attempts` or a refusal that retrying
//! cannot fix. Also the notifications API (list, retry a dead one).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde_json::{Value as Json_, json};
use store::{AttemptOutcome, Delivery, DeliveryFilter, DeliveryState, StoreError};
use tokio::sync::Semaphore;

use crate::AppState;
use crate::access::Caller;
use crate::api::rfc3339;
use crate::error::{ApiError, ErrorCode};
use crate::outbound::{error_chain, read_capped};

/// Deliveries sent at once.
const CONCURRENT_DELIVERIES: usize = 16;
/// How often the job decides notifications again from the stored findings.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(30);
/// The most of an answer read (for error messages and Conduit's envelope).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

pub(crate) async fn run_deliveries(
    state: Arc<AppState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let in_flight: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let slots = Arc::new(Semaphore::new(CONCURRENT_DELIVERIES));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut announced_at: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        // Deciding and sending happen on one replica: the background lease's holder.
        if !state.lease.is_held() {
            announced_at = None;
            continue;
        }
        if announced_at.is_none_or(|at| at.elapsed() >= ANNOUNCE_EVERY) {
            announced_at = Some(Instant::now());
            let state = Arc::clone(&state);
            match tokio::task::spawn_blocking(move || super::announce_recent(&state)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "deciding notifications failed; will retry")
                }
                Err(e) => {
                    tracing::error!(error = %e, "deciding notifications panicked; will retry")
                }
            }
        }
        let due = {
            let state = Arc::clone(&state);
            let now = state.clock.now_unix_nanos();
            tokio::task::spawn_blocking(move || state.store.due_deliveries(now, 256)).await
        };
        let due = match due {
            Ok(Ok(due)) => due,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading the outbox failed; will retry");
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the outbox panicked; will retry");
                continue;
            }
        };
        for delivery in due {
            if !in_flight.lock().unwrap_or_else(|e| e.into_inner()).insert(delivery.id) {
                continue;
            }
            let (state, in_flight, slots) =
                (Arc::clone(&state), Arc::clone(&in_flight), Arc::clone(&slots));
            tokio::spawn(async move {
                let id = delivery.id;
                if let Ok(_slot) = slots.acquire().await
                    && let Err(e) = deliver_one(&state, delivery).await
                {
                    tracing::warn!(delivery = id, error = %e, "could not record a delivery attempt; it will be sent again");
                }
                in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            });
        }
    }
}

/// Sends every delivery due now once, one after another, and records the attempts: the job's
/// work without its timer, for tests. Returns how many were attempted.
pub async fn deliver_due(state: &Arc<AppState>) -> Result<usize, StoreError> {
    let now = state.clock.now_unix_nanos();
    let due = {
        let state = Arc::clone(state);
        tokio::task::spawn_blocking(move || state.store.due_deliveries(now, 10_000))
            .await
            .map_err(|e| StoreError::Metadata(e.to_string()))??
    };
    let attempted = due.len();
    for delivery in due {
        deliver_one(state, delivery).await?;
    }
    Ok(attempted)
}

async fn deliver_one(state: &Arc<AppState>, delivery: Delivery) -> Result<(), StoreError> {
    let outcome = match attempt(state, &delivery).await {
        Ok(status) => {
            tracing::info!(delivery = delivery.id, sink = %delivery.sink, target = %delivery.target, "notification delivered");
            AttemptOutcome::Delivered { status }
        }
        Err(failure) => {
            let retry = &state.settings.notifications.retry;
            let attempts = delivery.attempts + 1;
            let retry_at = (!failure.permanent && attempts < retry.max_attempts).then(|| {
                let delay = super::message::retry_delay(
                    attempts,
                    retry.initial_backoff,
                    retry.max_backoff,
                    &delivery.idempotency_key,
                )
                .max(failure.retry_after.unwrap_or_default());
                state.clock.now_unix_nanos() + delay.as_nanos() as u64
            });
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
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || {
        let now = state.clock.now_unix_nanos();
        state.store.record_attempt(delivery.id, &outcome, now)
    })
    .await
    .map_err(|e| StoreError::Metadata(e.to_string()))?
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

/// One HTTP attempt; the receiver's status when it took the message.
async fn attempt(state: &AppState, delivery: &Delivery) -> Result<u16, Failure> {
    let client = state.http.as_ref().map_err(|e| Failure::new(format!("no HTTP client: {e}")))?;
    let request: forge::api::ApiRequest = serde_json::from_str(&delivery.request)
        .map_err(|e| Failure::permanent(format!("the stored request is not readable: {e}")))?;
    let settings = &state.settings;
    let (kind, name) = delivery.sink.split_once(':').unwrap_or((&delivery.sink, ""));
    let gone = |section: &str| {
        Failure::permanent(format!(
            "no `{section}` named `{name}` in the configuration anymore; restore it and retry"
        ))
    };
    let mut forge_kind = None;
    let builder = match kind {
        "alertmanager" => {
            let sink = settings.notifications.alertmanagers.iter().find(|s| s.name == name);
            let sink = sink.ok_or_else(|| gone("[[alerts.alertmanager]]"))?;
            let url = format!("{}{}", sink.url.trim_end_matches('/'), request.path);
            client.post(url).json(&request.body)
        }
        "webhook" => {
            let sink = settings.notifications.webhooks.iter().find(|s| s.name == name);
            let sink = sink.ok_or_else(|| gone("[[alerts.webhook]]"))?;
            client
                .post(&sink.url)
                .header("idempotency-key", &delivery.idempotency_key)
                .json(&request.body)
        }
        "forge" => {
            let integration = settings.changes.integrations.iter().find(|i| i.name == name);
            let integration = integration.ok_or_else(|| gone("[[integrations]]"))?;
            let (Some(api_url), Some(token)) = (&integration.api_url, &integration.api_token)
            else {
                return Err(Failure::permanent(format!(
                    "integration `{name}` has no `api_url` or API token; set `api_url` and `api_token_env`, then retry"
                )));
            };
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
    let taken = match forge_kind {
        Some(kind) => forge::api::read_answer(kind, status, &body),
        None if (200..300).contains(&status) => Ok(()),
        None => Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)]).trim()
        )),
    };
    taken.map(|()| status).map_err(|message| Failure {
        status: Some(status),
        message,
        // The request is wrong, or what it points at is gone: sending it again cannot help.
        permanent: matches!(status, 400 | 404 | 405 | 410 | 413 | 422),
        retry_after,
    })
}

/// One delivery as the API shows it (never its request, which may name internal paths).
pub(crate) fn delivery_view(d: &Delivery) -> Json_ {
    json!({
        "id": d.id,
        "sink": d.sink,
        "kind": d.kind,
        "target": d.target,
        "summary": d.summary,
        "state": d.state.as_str(),
        "attempts": d.attempts,
        "finding_id": d.finding_id,
        "deploy_id": d.deploy_id,
        "created": rfc3339(d.created_unix_nanos),
        "next_attempt": (d.state == DeliveryState::Pending).then(|| rfc3339(d.next_attempt_unix_nanos)),
        "finished": d.finished_unix_nanos.map(rfc3339),
        "last_status": d.last_status,
        "last_error": d.last_error,
    })
}

/// Whether the caller may see a delivery: it is about a deploy of a service they see.
fn may_see(state: &AppState, caller: &Caller, d: &Delivery) -> Result<bool, StoreError> {
    let Some(deploy) = d.deploy_id.map(|id| state.store.deploy(id)).transpose()?.flatten() else {
        return Ok(caller.visibility.services.is_none());
    };
    let environment = Some(deploy.environment.as_str()).filter(|e| !e.is_empty());
    Ok(caller.visibility.allows(&deploy.service, environment))
}

/// `GET /api/v1/notifications?finding=&deploy=&state=&limit=&next=`
pub(crate) async fn list_notifications(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Json_>, ApiError> {
    let mut filter = DeliveryFilter { limit: 100, ..DeliveryFilter::default() };
    for (key, value) in params {
        let number = |what: &str| {
            value.parse::<u64>().map_err(|_| {
                ApiError::invalid(format!("`{key}` = `{value}` is not {what}; give a number"))
            })
        };
        match key.as_str() {
            "finding" => filter.finding_id = Some(number("a finding id")?),
            "deploy" => filter.deploy_id = Some(number("a deploy id")?),
            "next" => filter.before_id = Some(number("a cursor from a previous page")?),
            "limit" => filter.limit = number("a count")?.clamp(1, 1000) as usize,
            "state" => {
                filter.state = Some(DeliveryState::parse(&value).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "`state` = `{value}` is not a delivery state; use pending, delivered, dead or superseded"
                    ))
                })?)
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown parameter `{other}`; use finding, deploy, state, limit or next"
                )));
            }
        }
    }
    let view = tokio::task::spawn_blocking(move || -> Result<Json_, StoreError> {
        let rows = state.store.deliveries(&filter)?;
        let next = (rows.len() == filter.limit).then(|| rows.last().map(|d| d.id)).flatten();
        let mut visible = Vec::new();
        for d in &rows {
            if may_see(&state, &caller, d)? {
                visible.push(delivery_view(d));
            }
        }
        Ok(json!({"notifications": visible, "next": next.map(|id| id.to_string())}))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(view))
}

/// `POST /api/v1/notifications/{id}/retry`: a dead delivery goes back in the queue.
pub(crate) async fn retry_notification(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Json_>, ApiError> {
    let id: u64 = id.parse().map_err(|_| {
        ApiError::invalid(format!("`{id}` is not a notification id; ids are numbers"))
    })?;
    let not_found = move || ApiError::new(ErrorCode::NotFound, format!("no notification {id}"));
    let view = tokio::task::spawn_blocking(move || -> Result<Result<Json_, ApiError>, StoreError> {
        let Some(delivery) = state.store.delivery(id)? else { return Ok(Err(not_found())) };
        if !may_see(&state, &caller, &delivery)? {
            return Ok(Err(not_found()));
        }
        if !state.store.retry_delivery(id, state.clock.now_unix_nanos())? {
            return Ok(Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "notification {id} is {}, not dead; only dead notifications are retried by hand",
                    delivery.state.as_str()
                ),
            )));
        }
        let retried = state.store.delivery(id)?.unwrap_or(delivery);
        Ok(Ok(delivery_view(&retried)))
    })
    .await
    .map_err(ApiError::internal)???;
    Ok(Json(view))
}
